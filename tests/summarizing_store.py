"""SummarizingSession as an entry of the Session contract suite (the registry in tests/stores.py).

At merge, one entry joins ``STORES`` there, built from the SDK store's own pieces::

    Store("summarizing_sqlalchemy", SQL_BACKENDS, sdk_sql_engine, summarizing_sqlalchemy, sql_write_raw)

and the suite's known MySQL deadlock on concurrent first writes applies to it too (it writes through the SDK's
store): its ``connect`` is ``sdk_sql_engine``, so ``SDK_SQL_STORES`` names it.
The budget is one the contract's cases never reach, so the wrapper must be indistinguishable from the store it
wraps; what it does over budget is tests/test_summarizing_session.py.
"""

from __future__ import annotations

from typing import Any

from agents.extensions.memory import SQLAlchemySession
from agents.memory import Session, SessionSettings
from sqlalchemy.ext.asyncio import AsyncEngine

from session_management.common import OfflineModel
from session_management.stores.summarizing_session import ModelSummarizer, SummarizingSession


def summarizing_sqlalchemy(engine: AsyncEngine, session_id: str,
                           settings: SessionSettings | dict[str, Any] | None) -> Session:
    store = SQLAlchemySession(session_id, engine=engine, create_tables=False, session_settings=settings)
    return SummarizingSession(store, max_items=1_000_000, summarizer=ModelSummarizer(OfflineModel()))
