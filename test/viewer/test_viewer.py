"""The MJPEG viewer: its routes only, loopback by default, client cap, stalled clients."""

from __future__ import annotations

import http.client
import os
import socket
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from fer_ros.viewer.mjpeg_server import FrameHub, MjpegServer


def jpeg(value: int) -> bytes:
    return cv2.imencode(".jpg", np.full((48, 64, 3), value, np.uint8))[1].tobytes()


@pytest.fixture
def server():
    hub = FrameHub()
    srv = MjpegServer(hub, "127.0.0.1", 0, max_clients=2, send_timeout=1.0).start()
    feeding = threading.Event()

    def feed() -> None:
        i = 0
        while not feeding.is_set():
            hub.publish(jpeg(i % 255), {"frames": i, "faces": 1, "names": ["ada"]})
            i += 1
            time.sleep(0.02)

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    yield srv
    feeding.set()
    srv.stop()


def get(srv: MjpegServer, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read() if response.status != 200 or "mjpg" not in path else b""
    conn.close()
    return response.status, body


def test_binds_loopback_by_default() -> None:
    srv = MjpegServer(FrameHub(), port=0)
    try:
        assert srv.httpd.server_address[0] == "127.0.0.1"
    finally:
        srv.httpd.server_close()


def test_page_snapshot_and_stats(server: MjpegServer) -> None:
    status, body = get(server, "/")
    assert status == 200 and b"/stream.mjpg" in body
    time.sleep(0.1)
    status, body = get(server, "/snapshot.jpg")
    assert status == 200 and body[:2] == b"\xff\xd8"
    status, body = get(server, "/stats.json")
    assert status == 200 and b'"ada"' in body


@pytest.mark.parametrize("path", ["/../../etc/passwd", "/etc/passwd", "/static/x.js",
                                  "/%2e%2e/README.md", "//stream"])
def test_serves_only_its_own_routes(server: MjpegServer, path: str) -> None:
    status, body = get(server, path)
    assert status == 404 and b"root:" not in body


def read_frames(sock: socket.socket, count: int) -> int:
    data = b""
    sock.settimeout(5)
    while data.count(b"--frame") < count:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.count(b"--frame")


def stream_socket(srv: MjpegServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    sock.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
    return sock


def test_stream_caps_clients_and_survives_stalled_ones(server: MjpegServer) -> None:
    stalled = stream_socket(server)  # connects, then never reads
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    reader = stream_socket(server)
    assert read_frames(reader, 3) >= 3
    # Both slots are taken: a third viewer is refused, not queued.
    status, body = get(server, "/stream.mjpg")
    assert status == 503 and b"too many" in body
    reader.close()
    # The stalled client is dropped after send_timeout once its buffers fill; then a
    # new viewer gets frames again.
    deadline = time.monotonic() + 20
    while server.clients >= 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert server.clients < 2
    fresh = stream_socket(server)
    assert read_frames(fresh, 2) >= 2
    fresh.close()
    stalled.close()


def thread_cpu_s(native_id: int) -> float:
    """CPU time (user + system) of one thread of this process, from /proc."""
    stat = Path(f"/proc/self/task/{native_id}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()  # from field 3 (state) on
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_viewer_waiting_for_the_first_frame_does_not_spin() -> None:
    # The CPU time of the one thread serving that viewer, not of the whole process (other
    # threads of the test session count there): a thread blocked on the hub's condition
    # uses next to none, however busy the machine; a spinning one uses the whole wait.
    srv = MjpegServer(FrameHub(), "127.0.0.1", 0).start()
    try:
        others = set(threading.enumerate())
        sock = stream_socket(srv)
        deadline = time.monotonic() + 10
        while srv.clients < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        handlers = [t for t in threading.enumerate() if t not in others]
        assert srv.clients == 1 and len(handlers) == 1, (srv.clients, handlers)
        thread = handlers[0].native_id
        start, before = time.monotonic(), thread_cpu_s(thread)
        time.sleep(1.0)
        used, waited = thread_cpu_s(thread) - before, time.monotonic() - start
        assert srv.clients == 1  # still waiting for its first frame
        sock.close()
    finally:
        srv.stop()
    assert used <= 0.1 * waited, f"{used:.2f} s of CPU in {waited:.2f} s waiting for a frame"


def test_a_client_that_resets_its_connection_leaves_no_traceback(server: MjpegServer,
                                                                  capfd) -> None:
    """Browsers drop keep-alive connections; socketserver printed a traceback for each."""
    import struct

    for _ in range(3):
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(b"GET / HT")  # the server waits for the rest of the request line
        time.sleep(0.1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # RST, not FIN: ConnectionResetError on the server's read
    time.sleep(0.3)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request("GET", "/stats.json")
    assert conn.getresponse().status == 200  # still serving
    assert "Traceback" not in capfd.readouterr().err
