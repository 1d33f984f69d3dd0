"""A loopback HTTP server for a shard folder that can cut transfers short, with or without Range support."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class ShardServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path, ranges: bool):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root, self.ranges = Path(root), ranges
        self.cuts: dict[str, list[int]] = {}  # file name → body bytes sent before each next GET is cut off
        self.gets: list[tuple[str, int]] = []  # (file name, first byte asked for) of every GET

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/shards"


class _Handler(BaseHTTPRequestHandler):
    server: ShardServer

    def log_message(self, *args) -> None:
        pass

    def _file(self) -> Path | None:
        name = self.path.removeprefix("/shards/")
        path = self.server.root / name
        return path if "/" not in name and path.is_file() else None

    def _start(self, body_only: bool) -> tuple[bytes, str] | None:
        path = self._file()
        if path is None:
            self.send_error(404)
            return None
        data, offset = path.read_bytes(), 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        asked = int(match[1]) if match else 0
        if asked and self.server.ranges:
            offset = asked
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {offset}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - offset))
        self.end_headers()
        if not body_only:
            self.server.gets.append((path.name, asked))
        return data[offset:], path.name

    def do_HEAD(self) -> None:
        self._start(body_only=True)

    def do_GET(self) -> None:
        started = self._start(body_only=False)
        if started is None:
            return
        body, name = started
        cuts = self.server.cuts.get(name)
        if cuts:
            self.wfile.write(body[: cuts.pop(0)])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@contextmanager
def serve(root: Path, ranges: bool = True) -> Iterator[ShardServer]:
    """Serve ``root`` at ``server.url`` on 127.0.0.1 while the block runs."""
    server = ShardServer(root, ranges)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
