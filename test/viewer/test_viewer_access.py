"""The viewer's token (fer_ros/viewer/access.py): required beyond loopback, read from a
private file, asked for on every request, and a wrong one locks its address out for a while,
with log lines that never hold what was sent."""

from __future__ import annotations

import base64
import http.client
from pathlib import Path

import pytest

from fer_ros.viewer.access import (
    MAX_FAILURES,
    WINDOW_S,
    TokenGate,
    Verdict,
    ViewerTokenError,
    is_loopback,
    load_token,
    viewer_token,
)
from fer_ros.viewer.mjpeg_server import FrameHub, MjpegServer

TOKEN = "3f9c2b7e41d05a86c1e2"


def token_file(tmp_path: Path, text: str = TOKEN + "\n", mode: int = 0o600) -> Path:
    path = tmp_path / "viewer.token"
    path.write_text(text)
    path.chmod(mode)
    return path


def basic(password: str, user: str = "anyone") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.0.1.1", True), ("::1", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.20", False), ("10.0.0.5", False),
    ("robot.local", False)])
def test_loopback_is_only_what_this_machine_alone_reaches(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_beyond_loopback_the_viewer_needs_a_token(tmp_path: Path) -> None:
    assert viewer_token("127.0.0.1", "") is None
    for host in ("0.0.0.0", "192.168.1.20", "robot.local"):
        with pytest.raises(ViewerTokenError, match=f"would listen on {host}, beyond this "
                           "machine.*set viewer_token"):
            viewer_token(host, "")
        assert viewer_token(host, str(token_file(tmp_path))) == TOKEN
    # A token given for loopback is asked for there too.
    assert viewer_token("127.0.0.1", str(token_file(tmp_path))) == TOKEN


def test_the_token_file_must_be_private_and_hold_a_long_token(tmp_path: Path) -> None:
    assert load_token(str(token_file(tmp_path, f"  {TOKEN}  \nsecond line\n"))) == TOKEN
    with pytest.raises(ViewerTokenError, match=r"mode 0644, others may read it; chmod 600"):
        load_token(str(token_file(tmp_path, mode=0o644)))
    with pytest.raises(ViewerTokenError, match=r"mode 0640"):
        load_token(str(token_file(tmp_path, mode=0o640)))
    with pytest.raises(ViewerTokenError, match="has 5 characters, at least 16"):
        load_token(str(token_file(tmp_path, "short\n")))
    with pytest.raises(ViewerTokenError, match="has 0 characters"):
        load_token(str(token_file(tmp_path, "")))
    with pytest.raises(ViewerTokenError, match="cannot read it"):
        load_token(str(tmp_path / "missing"))
    binary = tmp_path / "binary.token"
    binary.write_bytes(b"\xff\xfe" * 20)
    binary.chmod(0o600)
    with pytest.raises(ViewerTokenError, match="not UTF-8 text"):
        load_token(str(binary))
    with pytest.raises(ViewerTokenError, match="not a regular file"):
        (tmp_path / "folder").mkdir(mode=0o700)
        load_token(str(tmp_path / "folder"))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bearer_and_basic_pass_and_nothing_else_does() -> None:
    gate = TokenGate(TOKEN, print)
    assert gate.check("a", f"Bearer {TOKEN}") is Verdict.ALLOWED
    assert gate.check("a", basic(TOKEN)) is Verdict.ALLOWED
    assert gate.check("a", basic(TOKEN, user="")) is Verdict.ALLOWED
    for wrong in (f"Bearer {TOKEN}x", basic(TOKEN[:-1]), f"Token {TOKEN}", TOKEN,
                  "Basic !!!not-base64", basic("anyone", user=TOKEN), "Bearer "):
        assert gate.check(f"b-{wrong}", wrong) is Verdict.UNAUTHORIZED, wrong


def test_wrong_tokens_lock_the_address_out_for_a_window_and_are_logged_without_them() -> None:
    clock, lines = Clock(), []
    gate = TokenGate(TOKEN, lines.append, clock=clock)
    # No header at all is a browser's first request: answered, never counted.
    for _ in range(3 * MAX_FAILURES):
        assert gate.check("10.0.0.9", None) is Verdict.UNAUTHORIZED
    assert gate.check("10.0.0.9", f"Bearer {TOKEN}") is Verdict.ALLOWED
    for i in range(MAX_FAILURES):
        clock.now += 1
        assert gate.check("10.0.0.9", f"Bearer guess{i}") is Verdict.UNAUTHORIZED
    # Locked: even the right token is refused until the window has passed ...
    assert gate.check("10.0.0.9", f"Bearer {TOKEN}") is Verdict.LOCKED_OUT
    assert gate.check("10.0.0.7", f"Bearer {TOKEN}") is Verdict.ALLOWED  # others are not
    clock.now += WINDOW_S - MAX_FAILURES + 0.5
    assert gate.check("10.0.0.9", f"Bearer {TOKEN}") is Verdict.LOCKED_OUT
    clock.now += MAX_FAILURES
    assert gate.check("10.0.0.9", f"Bearer {TOKEN}") is Verdict.ALLOWED
    assert lines == ["viewer: refused a request from 10.0.0.9: wrong token",
                     f"viewer: {MAX_FAILURES} requests with a wrong token from 10.0.0.9 "
                     f"within {WINDOW_S:g} s; refusing it for {WINDOW_S:g} s"]
    assert not any("guess" in line or TOKEN in line for line in lines)


def test_a_success_forgets_earlier_failures() -> None:
    clock = Clock()
    gate = TokenGate(TOKEN, lambda _: None, clock=clock)
    for _ in range(MAX_FAILURES - 1):
        gate.check("a", "Bearer wrong")
    assert gate.check("a", f"Bearer {TOKEN}") is Verdict.ALLOWED
    for _ in range(MAX_FAILURES - 1):
        assert gate.check("a", "Bearer wrong") is Verdict.UNAUTHORIZED
    assert gate.check("a", f"Bearer {TOKEN}") is Verdict.ALLOWED


def request(server: MjpegServer, path: str, authorization: str | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request("GET", path, headers={"Authorization": authorization} if authorization else {})
    response = conn.getresponse()
    body = response.read() if response.status != 200 or "mjpg" not in path else b""
    headers = dict(response.getheaders())
    conn.close()
    return response.status, headers, body


def test_the_server_asks_every_route_for_the_token() -> None:
    lines: list[str] = []
    hub = FrameHub()
    hub.publish(b"\xff\xd8jpeg", {"frames": 1, "faces": 0, "names": []})
    server = MjpegServer(hub, "127.0.0.1", 0, token=TOKEN, log=lines.append).start()
    try:
        for path in ("/", "/snapshot.jpg", "/stats.json", "/stream.mjpg", "/nothing"):
            status, headers, body = request(server, path)
            assert status == 401 and b"jpeg" not in body, path
            assert headers["WWW-Authenticate"] == 'Basic realm="fer_ros viewer", charset="UTF-8"'
        assert request(server, "/", basic(TOKEN))[0] == 200
        assert request(server, "/snapshot.jpg", f"Bearer {TOKEN}")[2] == b"\xff\xd8jpeg"
        assert request(server, "/nothing", f"Bearer {TOKEN}")[0] == 404
        for _ in range(MAX_FAILURES):
            assert request(server, "/", basic("guess"))[0] == 401
        status, headers, _ = request(server, "/", basic(TOKEN))
        assert status == 429 and headers["Retry-After"] == f"{WINDOW_S:.0f}"
        assert len(lines) == 2 and all("127.0.0.1" in line for line in lines)
    finally:
        server.stop()


def test_without_a_token_nothing_is_asked() -> None:
    server = MjpegServer(FrameHub(), "127.0.0.1", 0).start()
    try:
        assert request(server, "/")[0] == 200
    finally:
        server.stop()


def test_a_token_beyond_ascii_passes_as_browsers_and_curl_send_it() -> None:
    token = "schlüssel-für-den-zugang-2026"
    server = MjpegServer(FrameHub(), "127.0.0.1", 0, token=token, log=lambda _: None).start()
    try:
        # On the wire: UTF-8 bytes (http.client sends header text as latin-1).
        assert request(server, "/", "Bearer " + token.encode().decode("latin-1"))[0] == 200
        basic_utf8 = base64.b64encode(f"me:{token}".encode()).decode()
        assert request(server, "/", f"Basic {basic_utf8}")[0] == 200
        assert request(server, "/", "Bearer " + token.encode("latin-1").decode("latin-1"))[0] \
            == 401
    finally:
        server.stop()
