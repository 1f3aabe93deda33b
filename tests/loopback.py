"""A Hugging Face Hub and a dataset host on 127.0.0.1, for the download tests (no internet).

The Hub side answers what huggingface_hub asks of https://huggingface.co:
`HEAD|GET /datasets/<repo>/resolve/<revision>/<path>` with the Hub's headers (`X-Repo-Commit`,
`X-Linked-Etag` = the file's SHA-256, `X-Linked-Size`) and byte ranges for a resumed transfer. Any
other path is a plain file (an official host). Each file is served in one of these ways:

  ok          at full speed
  slow        `rate` bytes per second, in small pieces
  silent      the request is accepted and never answered (the connection stays open)
  silent_get  HEAD is answered, GET is accepted and never answered
  silent_first the first `times` GETs (default 1) are accepted and never answered; later GETs are served
  cut         the first `times` GETs (default 1) stop after half of what they were asked for and
              close the connection; later GETs (a resume, with a Range header) are served in full
  stall       the first `times` GETs (default 1) send half of what they were asked for, then go silent
              with the connection open; later GETs are served in full
  corrupt     one byte flipped, under the headers of the right file (its SHA-256 and size)
  error       every request is answered with HTTP `status` (default 500)

`requests` lists (method, path, Range header) for every request, in order.
"""
from __future__ import annotations

import hashlib
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Loopback:
    def __init__(self):
        self.files: dict[str, tuple[bytes, str, dict]] = {}   # path -> (content, mode, options)
        self.requests: list[tuple[str, str, str | None]] = []
        self.stop = threading.Event()
        self._cuts: dict[str, int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):   # quiet
                pass

            def do_HEAD(self):
                server._answer(self, body=False)

            def do_GET(self):
                server._answer(self, body=True)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    # -- what is served
    def hub_path(self, repo: str, revision: str, path: str) -> str:
        return f"/datasets/{repo}/resolve/{revision}/{path}"

    def serve(self, path: str, content: bytes, mode: str = "ok", **options) -> str:
        """Serve `content` at `path` (a URL path) in `mode`; returns the full URL."""
        self.files[path] = (content, mode, options)
        return self.url + path

    def close(self):
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- the handler's work
    def _answer(self, h: BaseHTTPRequestHandler, body: bool) -> None:
        path = h.path.split("?")[0]
        rng = h.headers.get("Range")
        self.requests.append((h.command, path, rng))
        if path not in self.files:
            h.send_response(404)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        content, mode, options = self.files[path]
        if mode == "error":
            h.send_response(options.get("status", 500))
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        first = mode == "silent_first" and body and self._cuts.get(path, 0) < options.get("times", 1)
        if first:
            self._cuts[path] = self._cuts.get(path, 0) + 1
        if mode == "silent" or (mode == "silent_get" and body) or first:
            self.stop.wait(30)   # accepted, never answered
            h.close_connection = True
            return
        real = content
        if mode == "corrupt":
            content = content[:len(content) // 2] + bytes([content[len(content) // 2] ^ 0xFF]) + content[len(content) // 2 + 1:]
        start = 0
        if rng and rng.startswith("bytes=") and body:
            start = int(rng[len("bytes="):].split("-")[0])
        h.send_response(206 if start else 200)
        if path.startswith("/datasets/"):
            revision = path.split("/resolve/")[1].split("/")[0]
            sha = hashlib.sha256(real).hexdigest()
            h.send_header("X-Repo-Commit", revision)
            h.send_header("X-Linked-Etag", f'"{sha}"')
            h.send_header("X-Linked-Size", str(len(real)))
            h.send_header("ETag", f'"{sha}"')
        h.send_header("Accept-Ranges", "bytes")
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(len(content) - start))
        if start:
            h.send_header("Content-Range", f"bytes {start}-{len(content) - 1}/{len(content)}")
        h.end_headers()
        if not body:
            return
        payload = content[start:]
        if mode in ("cut", "stall") and self._cuts.get(path, 0) < options.get("times", 1):
            self._cuts[path] = self._cuts.get(path, 0) + 1
            h.wfile.write(payload[:len(payload) // 2])
            h.wfile.flush()
            if mode == "stall":
                self.stop.wait(30)   # silent, the connection open
            h.close_connection = True
            return
        if mode == "slow":
            rate, piece = options.get("rate", 20_000), 2_000
            for i in range(0, len(payload), piece):
                if self.stop.is_set():
                    return
                try:
                    h.wfile.write(payload[i:i + piece])
                    h.wfile.flush()
                except OSError:   # the client gave up: what the test wants
                    return
                time.sleep(piece / rate)
            return
        h.wfile.write(payload)
