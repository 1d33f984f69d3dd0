"""IS where the network allows: torch-fidelity's weights fetched once into the torch hub cache with their SHA-256
checked, wrong bytes refused, and no server (offline) an "unavailable" line with the command that fetches them;
against a web server on 127.0.0.1."""

import hashlib
import http.server
import socket
import threading

import pytest
import torch

from ddpm.evaluation import isc_weights

WEIGHTS = b"the weights' bytes " * 1000


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    return tmp_path / "hub" / "checkpoints" / isc_weights.FILE


@pytest.fixture
def server():
    """A loopback web server serving ``served["body"]`` at /weights.pth; counts the requests."""
    served = {"body": WEIGHTS, "requests": 0}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            served["requests"] += 1
            self.send_response(200)
            self.send_header("Content-Length", str(len(served["body"])))
            self.end_headers()
            self.wfile.write(served["body"])

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}/weights.pth", served
    httpd.shutdown()
    httpd.server_close()


def test_the_right_bytes_are_fetched_once_and_cached(cache, server):
    url, served = server
    digest = hashlib.sha256(WEIGHTS).hexdigest()
    assert isc_weights.isc_weights_path("auto", url, digest) == cache
    assert cache.read_bytes() == WEIGHTS
    assert isc_weights.isc_weights_path("auto", url, digest) == cache and served["requests"] == 1  # from the cache
    assert isc_weights.isc_weights_path(None, url, digest) == cache  # null: the cache only, which holds it now


def test_wrong_bytes_are_refused_in_one_line_and_never_cached(cache, server):
    url, served = server
    served["body"] = b"a pickle that runs code"
    with pytest.raises(ValueError) as err:
        isc_weights.isc_weights_path("auto", url, hashlib.sha256(WEIGHTS).hexdigest())
    assert str(err.value).startswith(f"evaluate.isc_weights: {url} downloaded with SHA256 ")
    assert len(str(err.value).splitlines()) == 1 and not cache.exists()


def test_no_server_says_unavailable_with_the_command_that_fetches_them(cache):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound then released: nothing listens there
    with pytest.raises(isc_weights.Unavailable) as err:
        isc_weights.isc_weights_path("auto", f"http://127.0.0.1:{port}/weights.pth")
    line = str(err.value)
    assert line.startswith(f"cannot fetch http://127.0.0.1:{port}/weights.pth (")
    assert "ddpm isc-weights" in line and len(line.splitlines()) == 1
    with pytest.raises(isc_weights.Unavailable, match="evaluate.isc_weights is null .*ddpm isc-weights"):
        isc_weights.isc_weights_path(None)


def test_a_file_given_by_path_is_checked_and_never_fetched(tmp_path):
    wrong = tmp_path / "weights.pth"
    wrong.write_bytes(b"something else")
    with pytest.raises(ValueError, match=r"evaluate.isc_weights: .*weights.pth is not torch-fidelity's .*refusing"):
        isc_weights.isc_weights_path(str(wrong))
    with pytest.raises(ValueError, match="evaluate.isc_weights: .*missing.pth not found"):
        isc_weights.isc_weights_path(str(tmp_path / "missing.pth"))
