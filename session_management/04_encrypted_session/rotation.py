"""Key rotation for EncryptedSession over SQLAlchemySession: crash-safe, safe while the app keeps writing.

The protocol (ROTATION.md beside this file explains it, and the tests drill it):

1. The app switches to ``KeyRingSession(..., keys=[new_key, old_key])``: it writes with the new key and reads
   items under either key, so nothing it wrote before or writes during the switch is unreadable.
2. ``rotate_key()`` re-encrypts each session in **one transaction** that holds the lock every SDK write of that
   session takes (the session's row in ``agent_sessions``): each old-key row is rewritten in place with
   ``MultiFernet.rotate``, which keeps the token's creation time, so the TTL and the row's ``created_at`` are
   unchanged. A crash rolls the transaction back: the rows hold the old ciphertext or the new, never nothing.
3. Once every session is rotated, the app drops the old key.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from agents import TResponseInputItem
from agents.extensions.memory import EncryptedSession
from agents.memory import SessionABC
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from session_management.common import CourseError

FERNET_KEY = re.compile(r"[A-Za-z0-9_-]{43}=")
GENERATE = 'uv run python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'


def check_key(key: str, name: str = "ENCRYPTION_KEY") -> str:
    """*key* if it is a Fernet key (32 random bytes in URL-safe base64); a CourseError that says how to make one.

    The SDK also accepts any string and uses its bytes, but HKDF does not harden a passphrase: refuse it here.
    """
    key = key.strip()
    try:  # the alphabet first: the decoder skips characters it does not know
        if FERNET_KEY.fullmatch(key) and len(base64.urlsafe_b64decode(key)) == 32:
            return key
    except (binascii.Error, ValueError):
        pass
    raise CourseError(f"{name} is not a Fernet key (44 characters of URL-safe base64 encoding 32 random bytes).",
                      f"generate one with: {GENERATE}")


def session_cipher(session_id: str, key: str) -> Fernet:
    """The Fernet key EncryptedSession derives for *session_id* from the master *key* (the SDK's own derivation)."""
    return EncryptedSession(session_id, _NoStore(session_id), check_key(key)).cipher


class KeyRingSession(EncryptedSession):
    """An EncryptedSession that writes with ``keys[0]`` and reads items written under any of *keys*.

    What the app runs during a rotation: ``keys=[new_key, old_key]``. Same arguments as EncryptedSession
    otherwise (set ``ttl``: the SDK's default is 10 minutes).
    """

    def __init__(self, session_id: str, underlying_session: SessionABC, keys: Sequence[str], ttl: int = 600,
                 max_scan_items: int | None = None) -> None:
        if not keys:
            raise CourseError("KeyRingSession needs at least one key.", "pass keys=[new_key, old_key]")
        super().__init__(session_id, underlying_session, check_key(keys[0]), ttl=ttl,
                         max_scan_items=max_scan_items)
        # MultiFernet encrypts with the first key and decrypts, authenticates and reads timestamps with any.
        # (The SDK annotates cipher as a Fernet; MultiFernet has every method it calls.)
        self.cipher = MultiFernet([session_cipher(session_id, key) for key in keys])  # type: ignore[assignment]


@dataclass(frozen=True)
class Rotation:
    """What one ``rotate_key`` call did."""

    rotated: int  # rows re-encrypted from the old key to the new one
    already_new: int  # rows the new key already reads (written by the app after its switch, or a rerun)


async def rotate_key(session_id: str, engine: AsyncEngine, old_key: str, new_key: str, *,
                     sessions_table: str = "agent_sessions", messages_table: str = "agent_messages") -> Rotation:
    """Re-encrypt one session's rows from *old_key* to *new_key* in one transaction (see the module docstring).

    Rows of any age rotate (no TTL applies here) and keep their token timestamp and ``created_at``. A row that
    neither key reads (another key, or tampered) stops the rotation before anything is written: CourseError.
    """
    if check_key(old_key, "the old key") == check_key(new_key, "the new key"):
        raise CourseError("The old and the new key are the same.", "generate a new key to rotate to")
    new, both = session_cipher(session_id, new_key), MultiFernet([session_cipher(session_id, new_key),
                                                                    session_cipher(session_id, old_key)])
    rewrites: list[dict[str, object]] = []
    already_new = unreadable = 0
    async with engine.begin() as connection:
        # The lock every SDK write of this session takes first: SELECT ... FOR UPDATE of its agent_sessions row
        # (on SQLite, any write reserves the single writer). The app's writes to this session wait for the commit.
        if engine.dialect.name == "sqlite":
            await connection.execute(text(f"UPDATE {sessions_table} SET updated_at = updated_at "
                                          "WHERE session_id = :sid"), {"sid": session_id})
        else:
            await connection.execute(text(f"SELECT session_id FROM {sessions_table} WHERE session_id = :sid "
                                          "FOR UPDATE"), {"sid": session_id})
        rows = await connection.execute(text(f"SELECT id, message_data FROM {messages_table} "
                                             "WHERE session_id = :sid ORDER BY id"), {"sid": session_id})
        for row_id, data in rows:
            envelope = json.loads(data)
            token = envelope.get("payload", "").encode("ascii") if isinstance(envelope, dict) else b""
            try:
                new.extract_timestamp(token)  # authenticates without a TTL: the new key wrote this row
                already_new += 1
                continue
            except InvalidToken:
                pass
            try:
                envelope["payload"] = both.rotate(token).decode("ascii")  # same timestamp, new key
            except InvalidToken:
                unreadable += 1
                continue
            rewrites.append({"id": row_id, "data": json.dumps(envelope, separators=(",", ":"))})
        if unreadable:
            raise CourseError(f"Session {session_id!r} has {unreadable} rows that neither key reads: "
                              "nothing was rotated.", "find the key that wrote them, or remove those rows first")
        if rewrites:
            await connection.execute(text(f"UPDATE {messages_table} SET message_data = :data WHERE id = :id"),
                                     rewrites)
    return Rotation(rotated=len(rewrites), already_new=already_new)


class _NoStore(SessionABC):
    """A placeholder store: session_cipher only needs EncryptedSession's key derivation, not its storage."""

    session_settings = None

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        return []

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        raise NotImplementedError

    async def pop_item(self) -> None:
        return None

    async def clear_session(self) -> None:
        return None
