"""uvicorn, set up for clients that are slow on purpose (or on a bad link).

uvicorn 0.54 times out only an idle kept-alive connection (``timeout_keep_alive``, after a response). A client
that opens a connection and sends its headers or body a byte at a time is never cut off: each byte restarts
nothing, and a few hundred such clients hold a few hundred connections for as long as they like ("slowloris").
So the service runs uvicorn's h11 protocol with one more rule:

* ``CHAT_READ_TIMEOUT`` (seconds, default 30): from the moment the server waits for a request (a new
  connection, or the next request on a kept-alive one), the whole request, headers and body, must arrive within
  it; else the connection is closed. A body is at most ``CHAT_MAX_BODY_BYTES`` (64 KiB), so 30 s allows ~2 KB/s.

and states uvicorn's own limits: ``timeout_keep_alive`` 5 s, and headers of at most 16 KiB
(``h11_max_incomplete_event_size``; larger is a 400).
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from .database import seconds_setting

KEEP_ALIVE_S = 5
MAX_HEADER_BYTES = 16 * 1024


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request does not arrive whole within *read_timeout*."""

    read_timeout = 30.0  # set per server by `server_config`

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # as uvicorn's
        super().connection_made(transport)
        self._read_deadline: asyncio.TimerHandle | None = None
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE and self.conn.their_state is not h11.SEND_BODY:
            self._disarm()  # the request is in (or the connection is ending): the app's time is not bounded here

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.conn.their_state is h11.IDLE:
            self._arm()  # waiting for the next request on this connection

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._read_deadline = self.loop.call_later(self.read_timeout, self._too_slow)

    def _disarm(self) -> None:
        deadline: asyncio.TimerHandle | None = getattr(self, "_read_deadline", None)  # None before the first _arm
        if deadline is not None:
            deadline.cancel()
            self._read_deadline = None

    def _too_slow(self) -> None:
        self._read_deadline = None
        if not self.transport.is_closing():
            self.logger.info("closing a connection whose request did not arrive within %gs", self.read_timeout)
            self.transport.close()


def server_config(app: Any, host: str, port: int, **options: Any) -> uvicorn.Config:
    """The uvicorn settings the lesson serves with (``--serve`` and the demo)."""
    protocol = type("Protocol", (DeadlineH11Protocol,),
                    {"read_timeout": seconds_setting("CHAT_READ_TIMEOUT", DeadlineH11Protocol.read_timeout)})
    return uvicorn.Config(app, host=host, port=port, http=protocol, timeout_keep_alive=KEEP_ALIVE_S,
                          h11_max_incomplete_event_size=MAX_HEADER_BYTES, **options)
