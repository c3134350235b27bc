"""Who may see the viewer: a shared token, required whenever the viewer listens beyond this
machine.

The stream shows people's faces. On 127.0.0.1 only this machine's users reach it (and an
SSH tunnel is the usual way in); on any other address everyone on the network does, so the
overlay node refuses to serve there without ``viewer_token``: a file (mode 0600, like an
SSH key) holding the token. Every request must then carry it, as HTTP Basic (any user name,
the token as password: the browser asks once) or ``Authorization: Bearer <token>`` (scripts).
Failed attempts are counted per client address; after ``MAX_FAILURES`` within
``WINDOW_S`` the address is refused for the rest of the window. The log names the address at
its first failure and at its lockout (once per window each), never what was sent.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import stat
import threading
import time
from collections.abc import Callable
from enum import Enum
from pathlib import Path

MAX_FAILURES = 5
WINDOW_S = 60.0
MIN_TOKEN_CHARS = 16
REALM = "fer_ros viewer"


class ViewerTokenError(ValueError):
    """The token file cannot be used (said in one line, naming the file)."""


def is_loopback(host: str) -> bool:
    """True for addresses only this machine reaches (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def load_token(path: str) -> str:
    """The token in ``path``: the file's first line, stripped."""
    file = Path(path).expanduser()
    try:
        mode = file.stat().st_mode
        if not stat.S_ISREG(mode):
            raise ViewerTokenError(f"viewer_token {file}: not a regular file")
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ViewerTokenError(f"viewer_token {file}: cannot read it ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise ViewerTokenError(f"viewer_token {file}: not UTF-8 text") from exc
    if mode & 0o077:
        raise ViewerTokenError(f"viewer_token {file}: mode {stat.S_IMODE(mode):04o}, others "
                               f"may read it; chmod 600 {file}")
    lines = text.splitlines()
    token = lines[0].strip() if lines else ""
    if len(token) < MIN_TOKEN_CHARS:
        raise ViewerTokenError(f"viewer_token {file}: the token (its first line) has "
                               f"{len(token)} characters, at least {MIN_TOKEN_CHARS} are "
                               f"needed (e.g. openssl rand -hex 16 > {file})")
    return token


def viewer_token(bind_address: str, token_path: str) -> str | None:
    """The token the viewer on ``bind_address`` requires (None: none, loopback only);
    ViewerTokenError when it must not start."""
    if token_path:
        return load_token(token_path)
    if not is_loopback(bind_address):
        raise ViewerTokenError(
            f"the viewer would listen on {bind_address}, beyond this machine, where anyone "
            f"on the network could watch the faces it shows: set viewer_token to a file "
            f"(mode 0600) holding a token, or keep bind_address 127.0.0.1")
    return None


class Verdict(Enum):
    ALLOWED = "allowed"
    UNAUTHORIZED = "unauthorized"  # 401: no or a wrong token
    LOCKED_OUT = "locked out"  # 429: too many failures from this address


class TokenGate:
    """Checks each request's Authorization header against the token."""

    def __init__(self, token: str, log: Callable[[str], None], clock=time.monotonic) -> None:
        self._token = token.encode()
        self._log = log
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: dict[str, list[float]] = {}  # address -> times of failures
        self._said: dict[str, float] = {}  # address -> when its lockout was logged

    def _matches(self, authorization: str | None) -> bool:
        scheme, _, value = (authorization or "").partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer":
            # http.server decodes header bytes as latin-1: back to the bytes that came.
            offered = value.encode("latin-1", errors="replace")
        elif scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                return False
            offered = decoded.partition(b":")[2]
        else:
            return False
        return hmac.compare_digest(offered, self._token)

    def check(self, address: str, authorization: str | None) -> Verdict:
        now = self._clock()
        with self._lock:
            recent = [t for t in self._failures.get(address, []) if now - t < WINDOW_S]
            if len(recent) >= MAX_FAILURES:
                self._failures[address] = recent
                return Verdict.LOCKED_OUT
            if self._matches(authorization):
                self._failures.pop(address, None)
                return Verdict.ALLOWED
            if authorization is None:  # a browser's first request, before it asks the user
                return Verdict.UNAUTHORIZED
            if not recent:
                self._log(f"viewer: refused a request from {address}: wrong token")
            recent.append(now)
            self._failures[address] = recent
            locked = len(recent) >= MAX_FAILURES
            if locked and now - self._said.get(address, -WINDOW_S) >= WINDOW_S:
                self._said[address] = now
                self._log(f"viewer: {MAX_FAILURES} requests with a wrong token from "
                          f"{address} within {WINDOW_S:g} s; refusing it for "
                          f"{WINDOW_S:g} s")
            # Forget addresses whose failures are all old, so the table cannot grow
            # without end under a scan.
            if len(self._failures) > 1024:
                self._failures = {a: ts for a, ts in self._failures.items()
                                  if ts and now - ts[-1] < WINDOW_S}
                self._said = {a: t for a, t in self._said.items() if now - t < WINDOW_S}
            return Verdict.UNAUTHORIZED
