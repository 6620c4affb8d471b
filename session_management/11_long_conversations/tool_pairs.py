"""Tool calls and their results travel in pairs: trimming history must not split them.

OpenAI's Responses API rejects an input whose ``function_call_output`` has no ``function_call`` before it::

    400 No tool call found for function call output with call_id call_....

(Chat Completions rejects the same mistake with its own message about a ``tool`` message that does not answer
a preceding ``tool_calls``.) The course's offline model would carry on regardless, so :class:`CheckedModel`
checks its input the way the API does and raises that message, which lets the lesson show the failure offline.
"""

from __future__ import annotations

from typing import Any

from agents.items import TResponseInputItem
from agents.memory import SessionInputCallback

from session_management.common import OfflineModel
from session_management.stores.summarizing_session import safe_cut


class RejectedInput(Exception):
    """What the API would answer with a 400 for this input."""


def orphaned_results(items: list[Any]) -> list[str]:
    """call_ids of tool results whose call is not earlier in *items*."""
    calls: set[str] = set()
    orphans: list[str] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "function_call":
            calls.add(str(item.get("call_id")))
        elif item.get("type") == "function_call_output" and str(item.get("call_id")) not in calls:
            orphans.append(str(item.get("call_id")))
    return orphans


class CheckedModel(OfflineModel):
    """The offline model, refusing input the Responses API would refuse; it remembers what it was sent."""

    def __init__(self) -> None:
        super().__init__()
        self.last_input: list[Any] = []

    def _respond(self, system_instructions, input, tools, output_schema, handoffs=None):
        self.last_input = [input] if isinstance(input, str) else list(input)
        orphans = orphaned_results(self.last_input)
        if orphans:
            raise RejectedInput(f"400 No tool call found for function call output with call_id {orphans[0]}.")
        return super()._respond(system_instructions, input, tools, output_schema, handoffs)


def newest_items(count: int) -> SessionInputCallback:
    """The naive trim: the newest *count* stored items, wherever that cuts."""

    def combine(history: list[TResponseInputItem], new: list[TResponseInputItem]) -> list[TResponseInputItem]:
        return history[-count:] + new

    return combine


def whole_turns(count: int) -> SessionInputCallback:
    """At most the newest *count* stored items, starting at a user message, with every result's call."""

    def combine(history: list[TResponseInputItem], new: list[TResponseInputItem]) -> list[TResponseInputItem]:
        if len(history) <= count:
            return history + new
        cut = safe_cut(history, len(history) - count)
        return (history[cut:] if cut is not None else []) + new

    return combine
