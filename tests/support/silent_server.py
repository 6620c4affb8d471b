"""A server that accepts TCP connections and never says a word: a frozen database, as a client sees it.

A PostgreSQL or MySQL server that hangs (stopped with SIGSTOP, a full disk, a dead NFS mount) still completes
the TCP handshake in the kernel, then sends nothing. A client without a deadline waits for as long as the
operating system keeps the socket. Tests point URLs at :class:`SilentServer` to prove every wait is bounded.
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType


class SilentServer:
    """Listen on 127.0.0.1 (a free port), accept every connection, read and discard, never answer."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._connections: list[socket.socket] = []
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="silent-server", daemon=True)

    def _accept(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stopped.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._connections.append(connection)  # held open, never written to

    def __enter__(self) -> SilentServer:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._stopped.set()
        self._thread.join(timeout=2)
        for connection in [*self._connections, self._listener]:
            connection.close()
