"""Command name -> the coroutine that runs it."""

from __future__ import annotations

from .browse import cmd_list, cmd_show, cmd_stats
from .retention import cmd_purge
from .transfer import cmd_export, cmd_import

COMMANDS = {"list": cmd_list, "show": cmd_show, "export": cmd_export, "import": cmd_import, "purge": cmd_purge,
            "stats": cmd_stats}
