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
from sqlalchemy import text

from tests.support.web_service import ALICE, auth, database_module, new_conversation, row_counts, service

turn = importlib.import_module("session_management.06_web_service.turn")
store = importlib.import_module("session_management.06_web_service.store")
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
async def test_racing_first_writes_to_sessions_without_a_row_all_land_once(database_url: str) -> None:
    """A session row created elsewhere may be missing; save() creates it apart from the turn (racing inserts of
    one new key deadlock inside a transaction on InnoDB) and every racing writer's turn lands, once."""
    db = database_module.Database(database_url, PATIENT)
    try:
        await store.prepare(db)

        async def first_write(session_id: str, writer: int) -> None:
            session = turn.TurnSession(session_id, db)
            await session.add_items([{"role": "user", "content": f"writer {writer}"}])
            await session.save(f"writer {writer}", "a reply")

        ids = [f"new-{n}" for n in range(5)]
        await asyncio.gather(*(first_write(session_id, w) for session_id in ids for w in range(SENDERS)))
        for session_id in ids:
            stored = await turn.TurnSession(session_id, db).get_items()
            assert sorted(item["content"] for item in stored) == sorted(f"writer {w}" for w in range(SENDERS))
    finally:
        await db.engine.dispose()


@pytest.mark.parametrize("backend", ["mysql"])
async def test_a_turn_chosen_as_deadlock_victim_is_written_again(
        database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real InnoDB deadlock, with the turn as its victim: save() writes it again, once."""
    deadlocks = 0
    real = turn.is_deadlock

    def counting(error: BaseException) -> bool:
        nonlocal deadlocks
        found = real(error)
        deadlocks += found
        return found

    monkeypatch.setattr(turn, "is_deadlock", counting)
    async with service(database_url, timeouts=PATIENT) as client:
        chat = await new_conversation(client, ALICE)
        db = client.app.state.db  # type: ignore[attr-defined]
        session = turn.TurnSession(chat, db)
        await session.add_items([{"role": "user", "content": "hello"}])
        async with db.engine.connect() as other:
            await other.begin()
            # Heavier than the turn (InnoDB rolls back the transaction that changed fewer rows), holding the
            # conversation's row, which the turn updates last.
            await other.execute(text("CREATE TEMPORARY TABLE ballast (n INT)"))
            await other.execute(text("INSERT INTO ballast VALUES " + ",".join(f"({n})" for n in range(200))))
            await other.execute(text("UPDATE conversations SET title = 'held' WHERE id = :id"), {"id": chat})
            saving = asyncio.create_task(session.save("hello", "a reply"))
            waiting = text("SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                           "WHERE INFO LIKE 'UPDATE conversations SET updated_at%'")
            while not await other.scalar(waiting):  # noqa: ASYNC110 - polling the server: no event to wait on
                await asyncio.sleep(0.01)  # until the turn holds the session row and waits for the conversation
            # Now the session row: a cycle. InnoDB rolls the turn back; this transaction goes on.
            await other.execute(text("SELECT session_id FROM agent_sessions WHERE session_id = :id FOR UPDATE"),
                                {"id": chat})
            await other.commit()
        assert await saving == "a reply"
    assert deadlocks == 1
    counts = await row_counts(database_url)
    assert counts["agent_messages"] == 1  # written once, after the deadlock
