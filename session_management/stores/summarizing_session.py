"""SummarizingSession: a Session wrapper that keeps history within a budget by summarising its oldest part.

Wrap any store (SQLAlchemySession, CourseSession, EncryptedSession, RedisSession, ...)::

    session = SummarizingSession(SQLAlchemySession("user-1", engine=engine), max_items=40)

After every ``add_items`` the wrapper checks the budget (``max_items`` and/or ``max_tokens``, tokens estimated
as one per four characters of the stored JSON). Over budget, it keeps the newest part verbatim (``keep_items`` /
``keep_tokens``, by default half the budget), has a model summarise everything before it, and replaces that
older part with one summary item: a ``system`` message starting with :data:`SUMMARY_PREFIX`. The next summary
summarises the previous one with the items after it, so early facts carry forward.

Never loses anything on a crash:

* **Atomically** where the store supports the SDK's compaction protocol (``SQLAlchemySession`` on SQLite,
  PostgreSQL and MySQL, ``SQLiteSession``, and ``EncryptedSession`` over those): the summary is inserted and the
  old rows deleted in one transaction, which also checks that nobody appended in the meantime. That protocol
  (``_get_compaction_snapshot``) is private to the SDK; openai-agents is pinned and the tests catch a change.
* **Journaled** on any other store: the new history (summary + kept items) is written to a ``journal`` session
  first; only then is the store cleared and rewritten, and the journal cleared last. A crash in between is
  repaired by the next wrapper that touches the session: it finishes the rewrite from the journal. The journaled
  path protects against crashes, not against another *process* appending during the rewrite: one writer per
  conversation (as a chat service has) is assumed there.
* ``archive=`` (any Session) receives the raw items before they leave the store, so nothing is deleted at all.
  Each summary says how many raw items it stands for, so after a crash between the archive write and the replace
  the archive's surplus is known by position: nothing is archived twice, and repeated text is not mistaken for
  an item already archived. (tests/lessons/test_crash_drills.py kills a process at each step, on every database.)

A cut never splits a tool call from its result: the kept part always starts at a user message and contains the
call of every tool result in it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from agents import Agent, Model, Runner
from agents.items import TResponseInputItem
from agents.memory import Session, SessionABC, SessionSettings

from session_management.common.errors import CourseError
from session_management.common.offline_model import estimate_tokens

logger = logging.getLogger(__name__)

SUMMARY_PREFIX = "Summary of the earlier conversation"
_COVERS = re.compile(re.escape(SUMMARY_PREFIX) + r" \((\d+) items?\): ")
ALL_ITEMS = 2_147_483_647  # an explicit "everything", so a store's SessionSettings(limit=...) cannot shorten reads
SUMMARY_INSTRUCTIONS = (
    "You keep a running summary of a conversation between a user and an assistant. Write it in the user's own "
    "words where they stated facts about themselves (for example 'my name is Ada; I live in Paris'), keep every "
    "name, number, decision and open question, and drop small talk. Reply with the summary only."
)
SUMMARY_REQUEST = "Summarize the conversation above, including anything in an earlier summary."

Summarizer = Callable[[list[TResponseInputItem]], Awaitable[str]]


def is_summary(item: Any) -> bool:
    return (isinstance(item, dict) and item.get("role") == "system"
            and isinstance(item.get("content"), str) and item["content"].startswith(SUMMARY_PREFIX))


def summary_item(text: str, covers: int = 0) -> TResponseInputItem:
    """The summary message. *covers* counts the raw items summarised so far (all summaries together): it is how
    the archive knows, after a crash, which items it already holds (by position, never by their text)."""
    return {"role": "system", "content": f"{SUMMARY_PREFIX} ({covers} items): {text.strip()}"}


def summary_covers(item: Any) -> int | None:
    """How many raw items the summary *item* stands for; 0 when *item* is no summary, None if it does not say."""
    if not is_summary(item):
        return 0
    match = _COVERS.match(item["content"])
    return int(match.group(1)) if match else None


def item_tokens(item: Any) -> int:
    """Estimated tokens of one stored item: one per four characters of its JSON, as the offline model counts."""
    return estimate_tokens(json.dumps(item, default=str, separators=(",", ":")))


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def as_plain_messages(items: list[TResponseInputItem]) -> list[TResponseInputItem]:
    """Items a summarising model can read without the tools they mention: tool calls and results become text.

    Sending raw ``function_call`` items to a model that has no such tool is rejected by some providers.
    """
    names: dict[str, str] = {}
    plain: list[Any] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "function_call":
            names[str(item.get("call_id"))] = str(item.get("name"))
            plain.append({"role": "assistant", "content": f"(called {item.get('name')}({item.get('arguments')}))"})
        elif kind == "function_call_output":
            name = names.get(str(item.get("call_id")), "a tool")
            plain.append({"role": "assistant", "content": f"({name} returned: {_text(item.get('output'))})"})
        elif item.get("role") in ("user", "assistant", "system", "developer"):
            plain.append({"role": item.get("role"), "content": _text(item.get("content"))})
    return plain


class ModelSummarizer:
    """Summarises items with a model: the course's choice (offline model without a key) unless given one."""

    def __init__(self, model: str | Model | None = None, instructions: str = SUMMARY_INSTRUCTIONS) -> None:
        if model is None:
            from session_management.common.models import (
                lesson_model,  # here, not at import: reading .env is the caller's moment
            )

            model = lesson_model()
        self.agent = Agent(name="Summarizer", instructions=instructions, model=model)

    async def __call__(self, items: list[TResponseInputItem]) -> str:
        request: list[Any] = [*as_plain_messages(items), {"role": "user", "content": SUMMARY_REQUEST}]
        result = await Runner.run(self.agent, request)
        return str(result.final_output)


@dataclass(frozen=True)
class Compaction:
    """What one summarisation did (returned by :meth:`SummarizingSession.compact`)."""

    items_before: int
    items_after: int
    tokens_before: int
    tokens_after: int
    summarized: int  # items replaced by the summary (a previous summary included)
    atomic: bool  # True: one transaction (the SDK's protocol); False: the journaled rewrite


def safe_cut(items: list[TResponseInputItem], earliest: int) -> int | None:
    """The first index >= *earliest* where the history may be cut: a user message whose kept suffix holds the
    call of every tool result in it. None when there is no such place."""
    for cut in range(max(earliest, 1), len(items)):
        item = items[cut]
        if not (isinstance(item, dict) and item.get("role") == "user" and item.get("type") in (None, "message")):
            continue
        kept = items[cut:]
        calls = {i.get("call_id") for i in kept if isinstance(i, dict) and i.get("type") == "function_call"}
        outputs = {i.get("call_id") for i in kept if isinstance(i, dict) and i.get("type") == "function_call_output"}
        if outputs <= calls:
            return cut
    return None


class SummarizingSession(SessionABC):
    """A Session that summarises its oldest items when the history passes a budget (see the module docstring)."""

    def __init__(
        self,
        underlying: Session,
        *,
        max_items: int | None = None,
        max_tokens: int | None = None,
        keep_items: int | None = None,
        keep_tokens: int | None = None,
        summarizer: Summarizer | None = None,
        archive: Session | None = None,
        journal: Session | None = None,
    ) -> None:
        if max_items is None and max_tokens is None:
            raise CourseError("SummarizingSession needs a budget.", "pass max_items=... and/or max_tokens=...")
        if (max_items is not None and max_items < 3) or (max_tokens is not None and max_tokens < 1):
            raise CourseError("The budget is too small to hold a summary and a turn.",
                              "use max_items >= 3 (a summary, a question, an answer)")
        for name, side in (("journal", journal), ("archive", archive)):
            _check_ttl(name, side, underlying)
        self.underlying = underlying
        self.session_id = underlying.session_id
        self.max_items, self.max_tokens = max_items, max_tokens
        self.keep_items = keep_items if keep_items is not None else (max_items // 2 if max_items else None)
        self.keep_tokens = keep_tokens if keep_tokens is not None else (max_tokens // 2 if max_tokens else None)
        self._summarizer = summarizer
        self.archive, self.journal = archive, journal
        self._lock = asyncio.Lock()
        self._journal_checked = False
        self.compactions: list[Compaction] = []
        self.last_error: Exception | None = None  # the latest summary that failed during add_items, if any

    @property
    def session_settings(self) -> SessionSettings | None:
        return getattr(self.underlying, "session_settings", None)

    @session_settings.setter
    def session_settings(self, value: SessionSettings | None) -> None:
        # Settable, as the SDK's Session protocol asks (and as EncryptedSession does): it is the underlying's.
        self.underlying.session_settings = value

    @property
    def summarizer(self) -> Summarizer:
        if self._summarizer is None:
            self._summarizer = ModelSummarizer()
        return self._summarizer

    # -- the Session protocol: reads and writes go to the wrapped store ----------------------------------
    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        await self._recover()
        return await self.underlying.get_items(limit)

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        async with self._lock:
            await self._recover_locked()
            await self.underlying.add_items(items)
            try:
                await self._compact_locked(force=False)
            except CourseError:
                raise  # a setup mistake (no journal): say so now
            except Exception as error:  # noqa: BLE001 - the items are stored; a failed summary must not fail the turn
                self.last_error = error
                logger.warning("session %s: summarising failed (%s: %s); the history is intact and a later write "
                               "tries again", self.session_id, type(error).__name__, error)

    async def pop_item(self) -> TResponseInputItem | None:
        async with self._lock:
            await self._recover_locked()
            return await self.underlying.pop_item()

    async def clear_session(self) -> None:
        async with self._lock:
            if self.journal is not None:
                await self.journal.clear_session()
            await self.underlying.clear_session()

    # -- the budget --------------------------------------------------------------------------------------
    def over_budget(self, items: list[TResponseInputItem]) -> bool:
        if self.max_items is not None and len(items) > self.max_items:
            return True
        return self.max_tokens is not None and sum(map(item_tokens, items)) > self.max_tokens

    def _earliest_cut(self, items: list[TResponseInputItem]) -> int:
        """Keep at most keep_items / keep_tokens of the newest items: the cut may not be earlier than this."""
        earliest = 1
        if self.keep_items is not None:
            earliest = max(earliest, len(items) - self.keep_items)
        if self.keep_tokens is not None:
            total, index = 0, len(items)
            while index > 0 and total + item_tokens(items[index - 1]) <= self.keep_tokens:
                index -= 1
                total += item_tokens(items[index])
            earliest = max(earliest, index)
        return earliest

    async def compact(self, *, force: bool = False) -> Compaction | None:
        """Summarise now if over budget (or always, with *force*); None when nothing was done."""
        async with self._lock:
            await self._recover_locked()
            return await self._compact_locked(force=force)

    async def _compact_locked(self, *, force: bool) -> Compaction | None:
        reader = getattr(self.underlying, "_get_compaction_snapshot", None)
        snapshot = await reader(ALL_ITEMS) if reader is not None else None
        if snapshot is not None and not snapshot.complete:
            snapshot = None
        items = list(snapshot.items) if snapshot is not None else await self.underlying.get_items(ALL_ITEMS)
        if not force and not self.over_budget(items):
            return None
        cut = safe_cut(items, self._earliest_cut(items))
        if cut is None:
            logger.warning("session %s is over budget but has no safe place to cut (no user message in the "
                           "newest part); it keeps growing until one arrives", self.session_id)
            return None
        old, kept = items[:cut], items[cut:]
        covered = summary_covers(items[0])
        raw = [item for item in old if not is_summary(item)]
        summary = summary_item(await self.summarizer(old), (covered or 0) + len(raw))
        new_history = [summary, *kept]
        await self._archive(raw, covered)
        if snapshot is not None:
            if not await snapshot.replace_suffix(0, new_history):
                logger.info("session %s changed while summarising; trying again on the next write", self.session_id)
                return None
        elif not await self._journaled_rewrite(items, new_history):
            return None
        done = Compaction(len(items), len(new_history), sum(map(item_tokens, items)),
                          sum(map(item_tokens, new_history)), len(old), atomic=snapshot is not None)
        self.compactions.append(done)
        return done

    async def _archive(self, raw: list[TResponseInputItem], covered: int | None) -> None:
        """Append the raw items (not earlier summaries) to the archive, skipping those a crash left there.

        The archive holds the *covered* items of the stored summary, plus, if a crash came between an archive
        write and its replace, a copy of the first items of *raw*: what follows position *covered* in the
        archive. By position, so a repeated "Thanks!" is archived every time it is said and a crashed summary's
        items only once. Anything else after *covered* (two processes summarising one conversation at once)
        is not trusted: then everything is archived, twice rather than never.
        """
        if self.archive is None or not raw:
            return
        archived = await self.archive.get_items(ALL_ITEMS)
        pending = archived[covered:] if covered is not None and covered <= len(archived) else []
        already = min(len(pending), len(raw))
        if pending[:already] != raw[:already]:
            already = 0
        if already < len(raw):
            await self.archive.add_items(raw[already:])

    # -- the journaled path, for stores without an atomic replacement ------------------------------------
    def _need_journal(self) -> Session:
        if self.journal is None:
            raise CourseError(
                f"{type(self.underlying).__name__} cannot replace history atomically, and SummarizingSession "
                "will not clear and rewrite it without a journal.",
                "pass journal=<a second session of the same store>, e.g. with the id f'{session_id}:journal'",
            )
        return self.journal

    async def _journaled_rewrite(self, before: list[TResponseInputItem], after: list[TResponseInputItem]) -> bool:
        journal = self._need_journal()
        await journal.clear_session()
        # 1. the summary and the kept items are durable before anything goes; the header says how many follow,
        # so a journal a crash left half-written (or half-cleared) is recognised as such.
        await journal.add_items([_journal_header(len(after)), *after])
        self._journal_checked = False  # a failure from here on is repaired by the next call
        if await self.underlying.get_items(ALL_ITEMS) != before:
            await journal.clear_session()  # someone wrote meanwhile: abandon, nothing was removed
            self._journal_checked = True
            return False
        await self.underlying.clear_session()  # 2. the old history goes
        await self.underlying.add_items(after)  # 3. the new history lands
        await journal.clear_session()  # 4. done
        self._journal_checked = True
        return True

    async def _recover(self) -> None:
        if self.journal is None or self._journal_checked:
            return
        async with self._lock:
            await self._recover_locked()

    async def _recover_locked(self) -> None:
        """Finish a journaled rewrite a crash interrupted, wherever it stopped: it rolls forward.

        A whole journal was written after the archive and before the clear, so the store holds the old history,
        part of it (a clear that deletes item by item, killed halfway), nothing, part of the new history, or
        all of it. In every case the new history is the journal: what it leaves out is in the summary and the
        archive. A journal that is not whole was being written (nothing was removed yet) or cleared (the
        rewrite had landed): then the store is right as it is.
        """
        if self.journal is None or self._journal_checked:
            return
        journal = await self.journal.get_items(ALL_ITEMS)
        if journal:
            expected = _journal_length(journal[0])
            target = journal[1:]
            if expected is not None and expected == len(target):
                current = await self.underlying.get_items(ALL_ITEMS)
                if current[: len(target)] != target:  # newer items after a landed rewrite are fine
                    if target[: len(current)] != current:
                        await self.underlying.clear_session()
                        current = []
                    await self.underlying.add_items(target[len(current):])
                    logger.warning("session %s: finished a summary rewrite a crash interrupted", self.session_id)
            await self.journal.clear_session()
        self._journal_checked = True


JOURNAL_HEADER = "SummarizingSession journal: items that follow: "


def _journal_header(count: int) -> TResponseInputItem:
    return {"role": "system", "content": f"{JOURNAL_HEADER}{count}"}


def _journal_length(item: Any) -> int | None:
    content = item.get("content") if isinstance(item, dict) else None
    if isinstance(content, str) and content.startswith(JOURNAL_HEADER) and content[len(JOURNAL_HEADER):].isdigit():
        return int(content[len(JOURNAL_HEADER):])
    return None


def _check_ttl(name: str, side: Session | None, underlying: Session) -> None:
    """An EncryptedSession journal or archive must not forget sooner than the store it serves: with the SDK's
    default ttl=600 a journal read after a 10-minute outage is empty, and the rewrite it held is gone."""
    side_ttl, store_ttl = getattr(side, "ttl", None), getattr(underlying, "ttl", None)
    if isinstance(side_ttl, int) and (not isinstance(store_ttl, int) or side_ttl < store_ttl):
        store = f"the store's ({store_ttl} s)" if isinstance(store_ttl, int) else "the store's, which has none"
        raise CourseError(
            f"The {name}'s ttl ({side_ttl} s) is shorter than {store}: its items would expire while they are "
            "still needed.",
            f"give the {name}'s EncryptedSession a ttl at least as long as the store's retention",
        )
