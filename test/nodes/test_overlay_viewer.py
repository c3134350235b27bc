"""The installed overlay_node's viewer with viewer_token: it asks for the token; with a
token file others may read, the viewer stays off (one ERROR line) and the node runs on."""

from __future__ import annotations

import http.client
import socket
from pathlib import Path

import pytest
from conftest import wait_for

from fer_ros.paths import node_executable

TOKEN = "5d1e0c9a7b3f42e8a6c4"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def status_of(port: int, authorization: str | None = None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/", headers={"Authorization": authorization} if authorization else {})
    status = conn.getresponse().status
    conn.close()
    return status


def token_file(folder: Path, mode: int) -> str:
    path = folder / f"token-{mode:o}"
    path.write_text(TOKEN + "\n")
    path.chmod(mode)
    return str(path)


def overlay(spawn, port: int, token: str):
    return spawn([str(node_executable("overlay_node")), "--ros-args", "-p", f"port:={port}",
                  "-p", f"viewer_token:={token}"], "overlay")


def test_the_viewer_asks_for_its_token(spawn, tmp_path: Path) -> None:
    port = free_port()
    proc = overlay(spawn, port, token_file(tmp_path, 0o600))
    ready = f"viewer: open http://127.0.0.1:{port}/ in a browser (it asks for the token)"
    assert wait_for(lambda: ready in proc.output(), 30), proc.output()
    assert status_of(port) == 401
    assert status_of(port, "Bearer wrong-token-xxxxxxxx") == 401
    assert status_of(port, f"Bearer {TOKEN}") == 200
    assert proc.interrupt() == 0, proc.output()
    assert "refused a request from 127.0.0.1: wrong token" in proc.output()
    assert TOKEN not in proc.output() and "wrong-token" not in proc.output()


def test_a_token_others_may_read_keeps_the_viewer_off(spawn, tmp_path: Path) -> None:
    port = free_port()
    path = token_file(tmp_path, 0o644)
    proc = overlay(spawn, port, path)
    refused = f"viewer off: viewer_token {path}: mode 0644, others may read it; chmod 600"
    assert wait_for(lambda: refused in proc.output(), 30), proc.output()
    with pytest.raises(ConnectionRefusedError):
        status_of(port)
    assert proc.popen.poll() is None  # the node runs on without its viewer
    assert proc.interrupt() == 0, proc.output()
    assert proc.output().count("viewer off") == 1 and "Traceback" not in proc.output()
