"""A small MJPEG-over-HTTP viewer: an HTML page, a live stream and a snapshot.

Robots are headless; people look at a browser. Binds to 127.0.0.1 unless told
otherwise, asks for a token when given one (access.py: required beyond loopback), serves
only its own routes (no file system access at all), caps the number of concurrent stream
clients, and drops clients that stop reading (send timeout) so a stalled browser never
blocks the node or other viewers.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from fer_ros.viewer.access import REALM, WINDOW_S, TokenGate, Verdict


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: tuple) -> None:
        """A browser that goes away (connection reset, broken pipe, timeout) is normal:
        nothing to say. Anything else is one line, never socketserver's traceback."""
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            return
        print(f"fer_ros viewer: a request from {client_address[0]} failed: {exc!r}",
              file=sys.stderr, flush=True)


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fer_ros overlay</title>
<style>body{{background:#111;color:#ddd;font-family:sans-serif;margin:1em}}
img{{max-width:100%;border:1px solid #444}}
#main{{display:flex;gap:1em;align-items:flex-start}}
#panel{{min-width:16em}} .face{{margin-bottom:1em}}
.row{{display:flex;align-items:center;gap:.4em;font-size:.85em}}
.label{{width:5.5em}} .track{{flex:1;background:#333;height:.8em}}
.bar{{background:#4a9;height:100%}}</style></head>
<body><h1>fer_ros: faces, names and emotions</h1>
<div id="main"><img id="stream" src="/stream.mjpg" alt="annotated camera stream">
<div id="panel"><p id="perception">perception: waiting for diagnostics</p>
<div id="faces"></div></div></div>
<p id="stats">{title}</p>
<script>
function faceBlock(f) {{
  const d = document.createElement('div'); d.className = 'face';
  const h = document.createElement('b'); h.textContent = `${{f.name || 'face'}}: ${{f.emotion}}`;
  d.appendChild(h);
  for (const [label, p] of Object.entries(f.scores)) {{
    const row = document.createElement('div'); row.className = 'row';
    row.innerHTML = '<span class="label"></span><span class="track"><div class="bar">' +
      '</div></span><span class="pct"></span>';
    row.querySelector('.label').textContent = label;
    row.querySelector('.bar').style.width = `${{Math.round(p * 100)}}%`;
    row.querySelector('.bar').dataset.emotion = label;
    row.querySelector('.pct').textContent = `${{Math.round(p * 100)}}%`;
    d.appendChild(row);
  }}
  return d;
}}
async function poll() {{
  try {{
    const s = await (await fetch('/stats.json')).json();
    document.getElementById('stats').textContent =
      `frames ${{s.frames}} | faces ${{s.faces}} | ${{s.names.join(', ') || 'nobody named'}}`;
    const faces = document.getElementById('faces');
    faces.replaceChildren(...(s.details || []).map(faceBlock));
    if (s.perception) {{
      document.getElementById('perception').textContent =
        `perception: ${{s.perception.fps}} fps, latency ${{s.perception.latency_ms}} ms ` +
        `(p95 ${{s.perception.latency_p95_ms}} ms)`;
    }}
  }} catch (e) {{}}
  setTimeout(poll, 1000);
}}
poll();
</script></body></html>
"""


class FrameHub:
    """The latest JPEG and a condition that wakes every stream client when it changes."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.jpeg: bytes | None = None
        self.seq = 0
        self.stats: dict = {"frames": 0, "faces": 0, "names": []}

    def publish(self, jpeg: bytes, stats: dict | None = None) -> None:
        with self.cond:
            self.jpeg = jpeg
            self.seq += 1
            if stats is not None:
                self.stats = stats
            self.cond.notify_all()


class MjpegServer:
    def __init__(self, hub: FrameHub, host: str = "127.0.0.1", port: int = 8080,
                 max_clients: int = 4, send_timeout: float = 5.0, title: str = "",
                 token: str | None = None, log: Callable[[str], None] | None = None) -> None:
        self.hub = hub
        self.gate = (TokenGate(token, log or (lambda line: print(line, file=sys.stderr)))
                     if token else None)
        self.max_clients = max_clients
        self.send_timeout = send_timeout
        self.clients = 0
        self._clients_lock = threading.Lock()
        self._stopping = threading.Event()
        self.page = PAGE.format(title=title).encode()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = send_timeout  # also bounds a client that never sends its request

            def log_message(self, *_args) -> None:  # keep the node's log clean
                pass

            def do_GET(self) -> None:
                if server.gate is not None and not self._allowed():
                    return
                route = self.path.split("?", 1)[0]
                if route in ("/", "/index.html"):
                    self._send(HTTPStatus.OK, "text/html; charset=utf-8", server.page)
                elif route == "/snapshot.jpg":
                    jpeg = server.hub.jpeg
                    if jpeg is None:
                        self._send(HTTPStatus.SERVICE_UNAVAILABLE, "text/plain", b"no frame yet")
                    else:
                        self._send(HTTPStatus.OK, "image/jpeg", jpeg)
                elif route == "/stats.json":
                    self._send(HTTPStatus.OK, "application/json",
                               json.dumps(server.hub.stats).encode())
                elif route == "/stream.mjpg":
                    server._stream(self)
                else:
                    self._send(HTTPStatus.NOT_FOUND, "text/plain", b"not found")

            def _allowed(self) -> bool:
                verdict = server.gate.check(self.client_address[0],
                                            self.headers.get("Authorization"))
                if verdict is Verdict.UNAUTHORIZED:
                    self._send(HTTPStatus.UNAUTHORIZED, "text/plain", b"token required",
                               {"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'})
                elif verdict is Verdict.LOCKED_OUT:
                    self._send(HTTPStatus.TOO_MANY_REQUESTS, "text/plain",
                               b"too many wrong tokens", {"Retry-After": f"{WINDOW_S:.0f}"})
                return verdict is Verdict.ALLOWED

            def _send(self, status: HTTPStatus, ctype: str, body: bytes,
                      headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

        self.httpd = _Server((host, port), Handler)
        self.port = self.httpd.server_address[1]
        self.host = host
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="mjpeg",
                                        daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def start(self) -> MjpegServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        with self.hub.cond:
            self.hub.cond.notify_all()
        self.httpd.shutdown()
        self.httpd.server_close()

    def _stream(self, handler: BaseHTTPRequestHandler) -> None:
        with self._clients_lock:
            if self.clients >= self.max_clients:
                handler._send(HTTPStatus.SERVICE_UNAVAILABLE, "text/plain",
                              b"too many viewers")
                return
            self.clients += 1
        try:
            handler.connection.settimeout(self.send_timeout)
            handler.send_response(HTTPStatus.OK)
            handler.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            handler.send_header("Cache-Control", "no-store")
            handler.send_header("Connection", "close")
            handler.end_headers()
            seen = 0  # hub.seq of the last frame sent; 0 = none yet (no frame is 0)
            while not self._stopping.is_set():
                with self.hub.cond:
                    self.hub.cond.wait_for(lambda seen=seen: self.hub.seq != seen
                                           or self._stopping.is_set(), timeout=1.0)
                    jpeg, seq = self.hub.jpeg, self.hub.seq
                if jpeg is None or seq == seen:
                    continue
                seen = seq
                handler.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n"
                                    + f"Content-Length: {len(jpeg)}\r\n\r\n".encode()
                                    + jpeg + b"\r\n")
                handler.wfile.flush()
        except (OSError, TimeoutError):
            pass  # the client went away or stalled past send_timeout
        finally:
            handler.close_connection = True
            with self._clients_lock:
                self.clients -= 1
            time.sleep(0)  # let the next waiting client in
