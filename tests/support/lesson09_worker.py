"""One of several processes writing to the same sessions at once (tests/lessons/test_lesson_09.py).

    python -m tests.support.lesson09_worker URL PROCESS_NUMBER SESSIONS TURNS
"""

from __future__ import annotations

import asyncio
import sys

from session_management.common import create_engine
from session_management.stores.course_session import CourseSession


async def main(url: str, process: int, sessions: int, turns: int) -> None:
    engine = create_engine(url)
    try:
        async def conversation(number: int) -> None:
            store = CourseSession(f"mp-{number}", engine=engine)
            for turn in range(turns):
                await store.get_items()
                await store.add_items([{"role": "user", "content": f"p{process}-t{turn}-q"},
                                       {"role": "assistant", "content": f"p{process}-t{turn}-a"}])

        await asyncio.gather(*(conversation(n) for n in range(sessions)))
    finally:
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
