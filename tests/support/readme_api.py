"""Check that a README names only methods a class really has (tutorials often invent some)."""

from __future__ import annotations

import re
from pathlib import Path

_RECEIVERS = "session|reopened|scratch|encrypted|underlying|right|wrong|rotated|other"
_CALL = re.compile(rf"\b(?:{_RECEIVERS})\.([a-z_][a-z0-9_]*)\s*\(")
_TABLE_CELL = re.compile(r"^\|\s*`([a-z_][a-z0-9_]*)\(", re.MULTILINE)


def named_methods(readme: Path) -> set[str]:
    """Methods called as ``session.name(`` anywhere in *readme*, or listed as ``| `name(`` in a table."""
    text = readme.read_text(encoding="utf-8")
    return set(_CALL.findall(text)) | set(_TABLE_CELL.findall(text))


def missing_methods(readme: Path, *classes: type) -> set[str]:
    return {name for name in named_methods(readme) if not any(hasattr(cls, name) for cls in classes)}
