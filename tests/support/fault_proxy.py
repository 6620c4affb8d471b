"""A TCP proxy between the service and its database that fails on demand, the way networks and servers do.

    proxy = FaultProxy("127.0.0.1", 5432)
    await proxy.start()                 # then point the service at 127.0.0.1:proxy.port
    proxy.refuse()                      # nothing listens: new connections are refused, open ones reset
    proxy.stall()                       # a frozen server: connections are accepted, nothing is forwarded
    proxy.cut_when(b"marker")           # the next client packet containing the marker reaches the server,
                                        # then the connection is cut before any reply comes back
    await proxy.heal()                  # back to forwarding (held bytes are delivered, like SIGCONT)
    await proxy.close()

A stalled proxy is what ``kill -STOP`` on the server, a network partition or a frozen VM look like to a
client: the TCP connection stays up and no byte comes back. Only a timeout notices it.
"""

from __future__ import annotations

import asyncio


class FaultProxy:
    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.cuts = 0  # how many connections cut_when() has cut, so a test can prove its fault happened
        self._server: asyncio.Server | None = None
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._marker: bytes | None = None
        self._transports: set[asyncio.Transport] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    def refuse(self) -> None:
        """Stop listening and reset every open connection: a stopped server, a closed port."""
        if self._server is not None:
            self._server.close()
            self._server = None
        self._reset_all()

    def stall(self) -> None:
        """Accept and hold: connections stay open, no byte goes through in either direction."""
        self._flowing.clear()

    def cut_when(self, marker: bytes) -> None:
        """Cut the connection that next sends *marker*, after the server has received it (mid-query)."""
        self._marker = marker

    async def heal(self) -> None:
        self._marker = None
        self._flowing.set()
        if self._server is None:
            await self.start()  # the same port again

    async def close(self) -> None:
        self.refuse()
        self._flowing.set()

    def _reset_all(self) -> None:
        for transport in list(self._transports):
            transport.abort()
        self._transports.clear()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            await self._forward(client_reader, client_writer)
        except asyncio.CancelledError:  # the event loop is shutting down: nothing to report
            client_writer.transport.abort()

    async def _forward(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        await self._flowing.wait()  # while stalled, a new connection is accepted and then hears nothing
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.transport.abort()
            return
        pair = {client_writer.transport, server_writer.transport}
        self._transports |= pair  # type: ignore[arg-type]
        cutting = asyncio.Event()  # set once the marker went up: from then on no reply comes back

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter, upstream: bool) -> None:
            try:
                while data := await source.read(65536):
                    await self._flowing.wait()
                    if cutting.is_set():
                        break
                    marked = upstream and self._marker is not None and self._marker in data
                    if marked:
                        self._marker = None
                        cutting.set()
                    sink.write(data)
                    await sink.drain()
                    if marked:
                        self.cuts += 1
                        await asyncio.sleep(0.2)  # the server reads and runs it; its reply is dropped
                        break
            except (ConnectionError, OSError):
                pass
            finally:
                for transport in pair:
                    transport.abort()

        try:
            await asyncio.gather(pipe(client_reader, server_writer, True), pipe(server_reader, client_writer, False))
        finally:
            self._transports -= pair
