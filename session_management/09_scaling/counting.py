"""Count what a store costs on the wire: a TCP proxy between the stores and the database server.

Wall-clock numbers depend on everything else the machine does; what a turn *sends* does not. The proxy forwards
bytes unchanged and counts, per database:

* **round trips**: each time the server answers after the client has spoken (a request sent in several pieces,
  or several statements in one request, is one round trip: the client waits once);
* **statements**: PostgreSQL's simple queries (each `;`-separated statement) and extended-protocol executions;
  MySQL's commands (each statement of a multi-statement `COM_QUERY`, a `COM_PING`, a prepared execution);
* **bytes** each way, and **connections** opened.

It runs in a thread of its own, with its own event loop, so the client's CPU time can be measured on the main
thread alone (`time.thread_time()`), without the proxy's share.
"""

from __future__ import annotations

import asyncio
import re
import threading
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy.engine import make_url

# Quoted text (strings with backslash or doubled-quote escapes, quoted names), removed before counting `;`.
_QUOTED = re.compile(rb"'(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.|\"\")*\"|`[^`]*`", re.S)
_PG_SSL_REQUEST, _PG_GSS_REQUEST, _PG_CANCEL = 80877103, 80877104, 80877102
_MYSQL_QUERY, _MYSQL_QUIT = 0x03, 0x01


@dataclass
class Counts:
    round_trips: int = 0
    statements: int = 0
    bytes_up: int = 0  # client to server
    bytes_down: int = 0
    connections: int = 0

    def __sub__(self, other: Counts) -> Counts:
        return Counts(*(getattr(self, f.name) - getattr(other, f.name) for f in fields(self)))

    def copy(self) -> Counts:
        return Counts(*(getattr(self, f.name) for f in fields(self)))


def statements_in(query: bytes) -> int:
    """Statements in a query text: the non-empty `;`-separated parts outside quotes; an empty query is one
    command the server still answers (a ping)."""
    parts = _QUOTED.sub(b"''", query).rstrip(b"\x00").split(b";")
    return max(1, sum(1 for part in parts if part.strip()))


class _PostgresCounter:
    """The client's half of PostgreSQL's protocol: untyped start-up messages, then typed ones."""

    def __init__(self) -> None:
        self.buffer, self.started = b"", False

    def feed(self, data: bytes) -> int:
        self.buffer += data
        statements = 0
        while True:
            if not self.started:
                if len(self.buffer) < 8:
                    return statements
                length = int.from_bytes(self.buffer[:4], "big")
                code = int.from_bytes(self.buffer[4:8], "big")
                if len(self.buffer) < length:
                    return statements
                self.buffer = self.buffer[length:]
                if code not in (_PG_SSL_REQUEST, _PG_GSS_REQUEST, _PG_CANCEL):
                    self.started = True  # the start-up message; typed messages follow
                continue
            if len(self.buffer) < 5:
                return statements
            kind, length = self.buffer[:1], int.from_bytes(self.buffer[1:5], "big")
            if len(self.buffer) < 1 + length:
                return statements
            body, self.buffer = self.buffer[5:1 + length], self.buffer[1 + length:]
            if kind == b"Q":
                statements += statements_in(body)
            elif kind == b"E":
                statements += 1


class _MySQLCounter:
    """The client's half of MySQL's protocol: a command is a packet with sequence number 0 (the handshake's
    packets from the client never have it)."""

    def __init__(self) -> None:
        self.buffer = b""

    def feed(self, data: bytes) -> int:
        self.buffer += data
        statements = 0
        while len(self.buffer) >= 4:
            length, sequence = int.from_bytes(self.buffer[:3], "little"), self.buffer[3]
            if len(self.buffer) < 4 + length:
                return statements
            body, self.buffer = self.buffer[4:4 + length], self.buffer[4 + length:]
            if sequence != 0 or not body or body[0] == _MYSQL_QUIT:
                continue
            statements += statements_in(body[1:]) if body[0] == _MYSQL_QUERY else 1
        return statements


class CountingProxy:
    """``proxy = CountingProxy(url); proxy.start(); engine = create_engine(proxy.url)``; then `snapshot()`."""

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        self.backend = parsed.get_backend_name()
        if self.backend not in ("postgresql", "mysql", "mariadb"):
            raise ValueError(f"counting needs a server database, not {self.backend}")
        self.target = (parsed.host or "127.0.0.1", parsed.port or (5432 if self.backend == "postgresql" else 3306))
        self._parsed = parsed
        self.counts = Counts()
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._severed: set[asyncio.Event] = set()  # one per live connection: set = dropped silently
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(asyncio.start_server(self._connection, "127.0.0.1", 0))
            except BaseException as error:  # noqa: BLE001 - handed to the starting thread
                failure.append(error)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=serve, name="counting-proxy", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        self.url = self._parsed.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def close() -> None:
            assert self._server is not None
            self._server.close()
            handlers = list(self._handlers)
            for handler in handlers:
                handler.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)
            loop.stop()

        asyncio.run_coroutine_threadsafe(close(), loop)
        thread.join(10)
        self._loop = self._thread = None

    def sever(self) -> None:
        """Drop every open connection *silently*, as an idle-dropping firewall or a vanished host does: the server
        side is closed, the client is told nothing, and its next request is answered with a reset (for tests)."""
        loop = self._loop
        assert loop is not None

        async def sever_all() -> None:
            for severed in list(self._severed):
                severed.set()

        asyncio.run_coroutine_threadsafe(sever_all(), loop).result(10)

    def snapshot(self) -> Counts:
        """The counts so far (read them when the traffic being measured has been answered)."""
        return self.counts.copy()

    async def _connection(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        try:
            await self._forward(client_reader, client_writer)
        except asyncio.CancelledError:
            pass  # stop(): end quietly (asyncio's stream server reports a cancelled handler as an error)
        finally:
            self._handlers.discard(handler)

    async def _forward(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.close()
            return
        self.counts.connections += 1
        severed = asyncio.Event()
        self._severed.add(severed)
        counter: Any = _PostgresCounter() if self.backend == "postgresql" else _MySQLCounter()
        spoke = [False]  # the client has sent something the server has not yet answered

        async def upstream() -> None:
            while data := await client_reader.read(65536):
                if severed.is_set():
                    client_writer.transport.abort()  # a reset, as from a middlebox that forgot the connection
                    return
                self.counts.bytes_up += len(data)
                self.counts.statements += counter.feed(data)
                spoke[0] = True
                server_writer.write(data)
                await server_writer.drain()

        async def downstream() -> None:
            while data := await server_reader.read(65536):
                if severed.is_set():
                    break
                self.counts.bytes_down += len(data)
                if spoke[0]:
                    self.counts.round_trips += 1
                    spoke[0] = False
                client_writer.write(data)
                await client_writer.drain()

        async def sever() -> None:
            await severed.wait()
            server_writer.close()  # the server sees the connection end; the client does not
            await upstream_task

        upstream_task = asyncio.ensure_future(upstream())
        tasks = [upstream_task, asyncio.ensure_future(downstream()), asyncio.ensure_future(sever())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if tasks[1] in done and severed.is_set():
                await upstream_task  # severed: the client learns of it only when it next speaks
        finally:
            self._severed.discard(severed)
            for task in tasks:
                task.cancel()
            # A reset connection ends a pump with an error: expected, and retrieved here.
            await asyncio.gather(*tasks, return_exceptions=True)
            for writer in (client_writer, server_writer):
                writer.close()
