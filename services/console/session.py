"""Console sessions: the API token is typed once, then an HttpOnly cookie and a CSRF token.

* ``POST /console/login`` with the API token (compared in constant time) opens a session: a
  random id in an ``HttpOnly; SameSite=Strict`` cookie (``Secure`` behind HTTPS), which page
  scripts cannot read, and a separate random CSRF token returned in the body.
* Every state-changing request (anything but GET/HEAD/OPTIONS) made with the cookie must carry the
  CSRF token in ``X-CSRF-Token``; a form on another site can send the cookie (where SameSite does
  not hold) but cannot know the token.
* Sessions live in this process's memory and expire after ``session_hours``; logging out ends
  one. Bearer-token clients (scripts, the CLI) need neither.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass

COOKIE = "facestream_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_SESSIONS = 1000


@dataclass(frozen=True)
class Session:
    csrf: str
    expires: float


class SessionStore:
    def __init__(self, token: str, hours: float = 12.0) -> None:
        self._token = token.encode()
        self.lifetime_s = hours * 3600.0
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def login(self, token: str) -> tuple[str, Session] | None:
        """A new session (cookie value, session) when ``token`` is the API token."""
        if not hmac.compare_digest(token.encode(), self._token):
            return None
        session_id = secrets.token_urlsafe(32)
        session = Session(secrets.token_urlsafe(32), time.time() + self.lifetime_s)
        with self._lock:
            self._drop_expired()
            if len(self._sessions) >= MAX_SESSIONS:  # the oldest goes: memory stays bounded
                self._sessions.pop(next(iter(self._sessions)))
            self._sessions[session_id] = session
        return session_id, session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        with self._lock:
            session = self._sessions.get(session_id)
        if session is None or session.expires < time.time():
            return None
        return session

    def logout(self, session_id: str | None) -> None:
        with self._lock:
            self._sessions.pop(session_id or "", None)

    def _drop_expired(self) -> None:
        now = time.time()
        for key in [k for k, s in self._sessions.items() if s.expires < now]:
            del self._sessions[key]

    def allows(self, method: str, cookies: dict[str, str], csrf: str | None) -> bool:
        """Whether a cookie-authenticated request may proceed: a live session, and for a
        state-changing method the session's CSRF token."""
        session = self.get(cookies.get(COOKIE))
        if session is None:
            return False
        if method.upper() in SAFE_METHODS:
            return True
        return csrf is not None and hmac.compare_digest(csrf.encode(), session.csrf.encode())


def parse_cookies(header: bytes | None) -> dict[str, str]:
    """Cookie header -> dict (malformed parts are ignored)."""
    cookies: dict[str, str] = {}
    for part in (header or b"").decode("latin-1").split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name:
            cookies[name] = value
    return cookies
