"""What the API checks before a request reaches a handler, and how it bounds the work it accepts.

* ``RequestGuard`` (ASGI middleware, outermost): the bearer token and ``Content-Length`` are
  checked from the raw request headers **before a byte of the body is read**; a body without a
  length (chunked) is counted as it arrives and cut off at the limit. A 2 GB upload without a token
  is answered 401 at once instead of being spooled to /tmp first.
* ``token_matches``: the comparison works on bytes, in constant time, so a malformed header
  (non-ASCII, empty, spaces, another scheme) is simply a wrong token: 401, never a 500.
* ``check_token_strength``: a weak token is refused at start-up.
* ``ModelPool``: model work (decoding, detection, encoding, style) runs in a bounded thread pool,
  never on the event loop; when every slot and the short queue are taken a request gets 503 at
  once, and ``/livez`` keeps answering during a burst.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import math
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from services.console.session import COOKIE, CSRF_HEADER, SessionStore, parse_cookies

T = TypeVar("T")
Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MIN_TOKEN_LENGTH = 20
MIN_TOKEN_BITS = 64.0
TOKEN_ALPHABET = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")
"""RFC 6750's b64token: what fits in a bearer header without quoting or ambiguity."""
KNOWN_PLACEHOLDERS = ("change-me", "changeme", "example", "password", "secret")


class WeakTokenError(ValueError):
    """The configured API token is too guessable to protect biometric data."""


def token_bits(token: str) -> float:
    """Estimated entropy: length x the Shannon entropy of the token's own character frequencies.
    A heuristic against accidents (``aaaa...``, ``change-me``), not a proof of randomness."""
    counts = Counter(token)
    per_char = -sum(c / len(token) * math.log2(c / len(token)) for c in counts.values())
    return per_char * len(token)


def check_token_strength(token: str) -> None:
    """Refuse tokens an attacker could guess: at least 20 characters of RFC 6750's token alphabet
    (no spaces or non-ASCII), at least 64 bits by ``token_bits``, and no placeholder words.
    ``python -c 'import secrets; print(secrets.token_urlsafe(32))'`` makes a good one."""
    if len(token) < MIN_TOKEN_LENGTH:
        raise WeakTokenError(f"the API token has {len(token)} characters; at least 20 are needed")
    if not TOKEN_ALPHABET.match(token):
        raise WeakTokenError(
            "the API token may use only A-Z a-z 0-9 - . _ ~ + / (and = at the end)"
        )
    if any(word in token.lower() for word in KNOWN_PLACEHOLDERS):
        raise WeakTokenError("the API token contains a placeholder word; generate a random one")
    bits = token_bits(token)
    if bits < MIN_TOKEN_BITS:
        raise WeakTokenError(f"the API token has ~{bits:.0f} bits of entropy; at least 64 needed")


def token_matches(header: bytes | None, token: bytes) -> bool:
    """True when ``header`` is exactly ``Bearer <token>`` (scheme case-insensitive). Bytes in,
    constant time in the token's length: any malformed header is just a mismatch."""
    if not header or len(header) < 7 or header[:7].lower() != b"bearer ":
        return False
    return hmac.compare_digest(header[7:], token)


class RequestGuard:
    """ASGI middleware: token and body size before the body; see the module docstring."""

    def __init__(
        self,
        app: Callable[[Scope, Receive, Send], Awaitable[None]],
        token: str,
        max_body_bytes: int,
        public_paths: Iterable[str],
        sessions: SessionStore | None = None,
        public_prefixes: tuple[str, ...] = (),
    ) -> None:
        """``sessions``: the console's (services/console/session.py): a request without a bearer
        token may use a session cookie, with the CSRF token on state-changing methods.
        ``public_prefixes``: paths open to all (the console's static files: no data in them)."""
        self.app = app
        self.sessions = sessions
        self.public_prefixes = public_prefixes
        self.token = token.encode()
        self.max_body_bytes = max_body_bytes
        self.public_paths = frozenset(public_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = [(k.lower(), v) for k, v in scope.get("headers", [])]
        path = scope["path"]
        if path not in self.public_paths and not path.startswith(self.public_prefixes):
            refusal = self._refusal(scope.get("method", "GET"), headers)
            if refusal is not None:
                status, reason, detail = refusal
                await _reply(send, status, reason, detail, bearer=status == 401)
                return
        lengths = [v for k, v in headers if k == b"content-length"]
        if lengths:
            if len(lengths) > 1 or not lengths[0].isdigit():
                await _reply(send, 400, "bad_request", "malformed Content-Length")
                return
            if int(lengths[0]) > self.max_body_bytes:
                await _reply(send, 413, "too_large", self._too_large())
                return
        await self._app_with_counted_body(scope, receive, send)

    def _refusal(
        self, method: str, headers: list[tuple[bytes, bytes]]
    ) -> tuple[int, str, str] | None:
        """None when the bearer token (or a console session, with CSRF) lets the request in."""
        authorizations = [v for k, v in headers if k == b"authorization"]
        if len(authorizations) == 1 and token_matches(authorizations[0], self.token):
            return None
        if self.sessions is not None and not authorizations:
            cookies = parse_cookies(b";".join(v for k, v in headers if k == b"cookie"))
            if self.sessions.get(cookies.get(COOKIE)) is not None:
                csrf = [v.decode("latin-1") for k, v in headers if k == CSRF_HEADER.encode()]
                if self.sessions.allows(method, cookies, csrf[0] if len(csrf) == 1 else None):
                    return None
                return 403, "csrf", "missing or wrong CSRF token (X-CSRF-Token)"
        return 401, "unauthorized", "missing or wrong bearer token"

    async def _app_with_counted_body(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app; if the body (chunked, or longer than it said) passes the limit, the app
        sees the client disconnect, and the client gets 413 whatever the app answered to that."""
        received = 0
        over = False
        replaced = False

        async def counted_receive() -> Message:
            nonlocal received, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    over = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal replaced
            if not over:
                await send(message)
            elif not replaced and message["type"] == "http.response.start":
                replaced = True
                await _reply(send, 413, "too_large", self._too_large())

        await self.app(scope, counted_receive, guarded_send)

    def _too_large(self) -> str:
        return f"request bodies are limited to {self.max_body_bytes} bytes"


async def _reply(send: Send, status: int, reason: str, detail: str, bearer: bool = False) -> None:
    body = json.dumps({"reason": reason, "detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if bearer:
        headers.append((b"www-authenticate", b"Bearer"))
    if status in (413, 400):
        headers.append((b"connection", b"close"))  # the rest of the body is not read
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class PoolFullError(RuntimeError):
    """Every model worker is busy and the queue is full: the API answers 503 with Retry-After."""


class ModelPool:
    """A fixed number of threads for model work plus a short queue; beyond that, refuse.

    Admission is counted on the event loop (one thread), so no lock is needed; a request that
    cannot be admitted fails at once instead of queueing behind minutes of work."""

    def __init__(self, workers: int, queue: int) -> None:
        self.workers = workers
        self.capacity = workers + queue
        self.in_flight = 0
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="model")

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        if self.in_flight >= self.capacity:
            raise PoolFullError(
                f"{self.in_flight} requests in model work ({self.workers} at once); retry shortly"
            )
        self.in_flight += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)
        finally:
            self.in_flight -= 1

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
