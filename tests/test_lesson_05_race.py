"""Racing first messages: a deadlock is not an outage.

On MySQL/MariaDB, simultaneous first writes to a session whose row does not exist yet deadlock inside the
SDK's ``add_items`` (InnoDB error 1213); the service once answered 7 of 400 such requests with 503. The service
now creates the session row with the conversation and retries a deadlocked save.
"""

from __future__ import annotations

import asyncio
import importlib
from collections import Counter

import pytest

from session_management.common import create_session_tables
from tests.web_service import ALICE, auth, database_module, new_conversation, row_counts, service

turn = importlib.import_module("session_management.05_web_service.turn")
CONVERSATIONS, SENDERS = 20, 20
# 400 requests queue for 30 pooled connections and, per conversation, for its row lock. On a busy machine that
# can take longer than the default 5 s deadline, which would make this a timing test; it is about deadlocks.
PATIENT = database_module.Timeouts(database=120)


@pytest.mark.parametrize("backend", ["mysql"])  # where the deadlock lives; PostgreSQL served 400/400 before
async def test_twenty_conversations_times_twenty_simultaneous_first_messages(database_url: str) -> None:
    async with service(database_url, timeouts=PATIENT) as client:
        chats = await asyncio.gather(*(new_conversation(client, ALICE) for _ in range(CONVERSATIONS)))

        async def first_message(chat: str, sender: int) -> int:
            response = await client.post(f"/api/conversations/{chat}/messages",
                                         json={"message": f"My name is Sender{sender}."}, headers=auth(ALICE))
            return response.status_code

        statuses = Counter(await asyncio.gather(*(first_message(chat, n) for chat in chats for n in range(SENDERS))))
        assert statuses == {200: CONVERSATIONS * SENDERS}, statuses  # zero 5xx
        counts = await row_counts(database_url)
        assert counts["agent_messages"] == CONVERSATIONS * SENDERS * 2  # every turn stored, once
        assert counts["agent_sessions"] == counts["conversations"] == CONVERSATIONS


@pytest.mark.parametrize("backend", ["mysql"])
async def test_turn_session_retries_deadlocks_on_brand_new_sessions(
        database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the session row created up front, InnoDB deadlocks; save() retries them and loses nothing."""
    deadlocks = 0
    real = turn.is_deadlock

    def counting(error: BaseException) -> bool:
        nonlocal deadlocks
        found = real(error)
        deadlocks += found
        return found

    monkeypatch.setattr(turn, "is_deadlock", counting)
    db = database_module.Database(database_url, PATIENT)
    try:
        await create_session_tables(db.engine)

        async def first_write(session_id: str, writer: int) -> None:
            session = turn.TurnSession(session_id, db)
            await session.add_items([{"role": "user", "content": f"writer {writer}"}])
            await session.save()

        ids = [f"new-{n}" for n in range(5)]
        await asyncio.gather(*(first_write(session_id, w) for session_id in ids for w in range(SENDERS)))
        for session_id in ids:
            assert len(await turn.TurnSession(session_id, db).get_items()) == SENDERS
    finally:
        await db.engine.dispose()
    assert deadlocks > 0  # the race really deadlocked, and every deadlock was retried


