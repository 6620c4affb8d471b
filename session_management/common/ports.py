"""A free loopback port, for a server the course starts for a moment (a demo, a test, a throwaway proxy)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A loopback port nobody listens on now: bound to port 0 (the system picks one), then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
