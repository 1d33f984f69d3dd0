"""An HTTP proxy on 127.0.0.1 in front of a tracking server that answers 503 to the first ``failures`` tries of
every ``every``-th distinct request (method, path, body), then passes it on: a shared server busy for a moment."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import free_port

HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "host", "content-length"}


class FlakyProxy:
    """``with FlakyProxy(upstream, failures=2, every=4) as proxy``: ``proxy.uri`` for clients, ``proxy.refused``
    the 503s it answered."""

    def __init__(self, upstream: str, failures: int, every: int = 1):
        self.upstream, self.failures, self.every = upstream.rstrip("/"), failures, every
        self.tries: Counter = Counter()
        self.refused = 0
        self.lock = threading.Lock()
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())

    def __enter__(self) -> FlakyProxy:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with proxy.lock:
                    key = (self.command, self.path, body)
                    proxy.tries[key] += 1
                    ordinal = list(proxy.tries).index(key)  # distinct requests in order of arrival
                    fail = ordinal % proxy.every == 0 and proxy.tries[key] <= proxy.failures
                    proxy.refused += fail
                if fail:
                    self._reply(503, {}, b'{"error_code": "TEMPORARILY_UNAVAILABLE", "message": "busy"}')
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
                req = urllib.request.Request(proxy.upstream + self.path, body or None, headers, method=self.command)
                try:
                    with urllib.request.urlopen(req, timeout=120) as res:
                        self._reply(res.status, dict(res.headers), res.read())
                except urllib.error.HTTPError as err:
                    self._reply(err.code, dict(err.headers), err.read())

            def _reply(self, status: int, headers: dict, body: bytes) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    if k.lower() not in HOP_HEADERS:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        return Handler
