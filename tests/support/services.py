"""How tests reach the machine's real services.

Locally a missing service skips its tests; with CI=true it fails them, so a
green CI run always means every backend was really exercised.
"""

from __future__ import annotations

import os
import socket

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

# The queue brokers of QUEUE_URL: name, port, URL (tests use a queue name of their own on them).
BROKERS = {
    "redis": ("Redis", 6379, "redis://127.0.0.1:6379/0"),
    "rabbitmq": ("RabbitMQ", 5672, "amqp://guest:guest@127.0.0.1:5672/"),
}


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip (locally) or fail (CI) when a service does not answer on host:port."""
    if port_open(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: a missing service is a failure)")
    pytest.skip(message)
