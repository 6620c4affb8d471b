"""Bearer tokens: who a request's ``Authorization`` header belongs to.

One function, used twice: by the gate (before the body is read) and by the ``current_user`` dependency.
A real service would verify tokens from its identity provider (OAuth2/OIDC) here instead of a dict.
"""

from __future__ import annotations

from collections.abc import Mapping

Users = Mapping[str, str]  # bearer token -> user name


def user_for(users: Users, authorization: str | None) -> str | None:
    """The user for ``Bearer <token>``, or None."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return users.get(token.strip())
