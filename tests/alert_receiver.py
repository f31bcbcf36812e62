"""A real webhook receiver on loopback for the alert delivery tests: answers from a script,
records every request (headers, body, when) for the test to verify with ``standardwebhooks``."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Script:
    """Answers in order ((status, headers, delay seconds)), then ``default`` forever."""

    answers: list[tuple[int, dict[str, str], float]] = field(default_factory=list)
    default: int = 200
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next(self) -> tuple[int, dict[str, str], float]:
        with self.lock:
            return self.answers.pop(0) if self.answers else (self.default, {}, 0.0)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"the receiver got {len(self.received)} of {count} requests")
            time.sleep(0.02)
        return list(self.received)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(length)
        script = self.server.script
        with script.lock:
            script.received.append(
                Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body,
                         time.monotonic())
            )  # fmt: skip
        status, headers, delay = script.next()
        time.sleep(delay)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, script: Script) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script = script


@contextmanager
def receiver(script: Script) -> Iterator[str]:
    """The receiver's URL (``http://127.0.0.1:PORT/hook``) while it runs."""
    server = _Server(script)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()
