"""Reading raw HTTP answers off a socket, for tests that speak HTTP by hand."""

from __future__ import annotations

import socket


def read_head(sock: socket.socket, timeout: float, received: bytes = b"") -> bytes:
    """`received` and what the server sends after it until its answer's head is complete, it hangs up,
    or it is quiet for `timeout` s."""
    sock.settimeout(timeout)
    try:
        while b"\r\n\r\n" not in received:
            more = sock.recv(65536)
            if not more:
                break
            received += more
    except (TimeoutError, ConnectionError):
        pass
    return received
