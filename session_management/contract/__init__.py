"""The course's contract for session stores: the rules the SDK's own `SQLAlchemySession` keeps, as code.

``rules.py`` holds the rules; ``python -m session_management.contract my_module:my_store`` runs them on a store
of yours (see ``__main__.py``); the course's test suite runs the same rules on every store it builds, with the
SDK's classes as the control.
"""

from .rules import RULES, Make, Rule, Subject

__all__ = ["RULES", "Make", "Rule", "Subject"]
