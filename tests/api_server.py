"""A real uvicorn server around an app, on a free loopback port, in a thread of the test."""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn


@contextmanager
def serving(app) -> Iterator[str]:
    """Yield the server's base URL while it runs; stop it afterwards."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def raw_request(base_url: str, head: bytes, body_chunks=(), timeout_s: float = 10.0) -> bytes:
    """Send ``head`` (request line and headers, without the blank line) and then the body chunks
    while the server lets us; return whatever response arrived (status line first)."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout_s) as conn:
        conn.sendall(head + b"\r\n\r\n")
        sent = 0
        try:
            for chunk in body_chunks:
                if select.select([conn], [], [], 0)[0]:
                    break  # the server answered before taking the whole body
                conn.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed: what we want to read
        raw_request.sent = sent  # type: ignore[attr-defined] - for the test's report
        response = b""
        try:
            while b"\r\n\r\n" not in response or not response.endswith(b"}"):
                data = conn.recv(65536)
                if not data:
                    break
                response += data
        except (ConnectionResetError, TimeoutError):
            pass
        return response
