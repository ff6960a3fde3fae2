"""Model downloads against a real HTTP server on 127.0.0.1 (http.server in a thread) and file:// URLs:
success, checksum mismatch, unreachable URL, and a partial download never left under the final name."""

from __future__ import annotations

import functools
import hashlib
import http.server
import socket
import threading
from pathlib import Path

import pytest

from mixup_inference.core.models.downloads import fetch_file

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest's output clean
        pass

    def do_GET(self) -> None:
        if self.path == "/truncated.ckpt":  # promises more bytes than it sends, then closes
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[: len(PAYLOAD) // 3])
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/served; yields its base URL."""
    served = tmp_path / "served"
    served.mkdir()
    (served / "model.ckpt").write_bytes(PAYLOAD)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_http_download_lands_under_the_final_name_with_its_sha256(server, tmp_path):
    dest = tmp_path / "data" / "models" / "model.ckpt"
    expected = hashlib.sha256(PAYLOAD).hexdigest()
    assert fetch_file(f"{server}/model.ckpt", dest, sha256=expected.upper(), progress=False) == expected
    assert dest.read_bytes() == PAYLOAD
    assert _leftovers(dest.parent) == ["model.ckpt"]
    # downloaded once: a second call reuses the file (the server is not asked again)
    assert fetch_file("http://127.0.0.1:9/never-asked.ckpt", dest, progress=False) == expected


def test_a_checksum_mismatch_names_both_hashes_and_leaves_nothing(server, tmp_path):
    dest = tmp_path / "d" / "model.ckpt"
    wrong = "0" * 64
    with pytest.raises(ValueError) as info:
        fetch_file(f"{server}/model.ckpt", dest, sha256=wrong, progress=False)
    message = str(info.value)
    assert hashlib.sha256(PAYLOAD).hexdigest() in message and wrong in message and "sha256" in message
    assert "\n" not in message and _leftovers(dest.parent) == []


def test_a_truncated_download_is_never_left_under_the_final_name(server, tmp_path):
    dest = tmp_path / "d" / "truncated.ckpt"
    with pytest.raises(ValueError, match=r"^cannot download http://127\.0\.0\.1:\d+/truncated\.ckpt"):
        fetch_file(f"{server}/truncated.ckpt", dest, progress=False)
    assert _leftovers(dest.parent) == []


def test_unreachable_and_missing_urls_fail_in_one_line(server, tmp_path):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for url in (f"http://127.0.0.1:{port}/model.ckpt", f"{server}/no-such-file.ckpt"):
        with pytest.raises(ValueError) as info:
            fetch_file(url, tmp_path / "d" / "x.ckpt", progress=False)
        assert str(info.value).startswith(f"cannot download {url} (") and "\n" not in str(info.value)
        assert "give its local path in the config" in str(info.value)
    assert _leftovers(tmp_path / "d") == []


def test_file_urls_and_local_paths_need_no_network(tmp_path):
    source = tmp_path / "mine.pt"
    source.write_bytes(PAYLOAD)
    expected = hashlib.sha256(PAYLOAD).hexdigest()
    assert fetch_file(source.as_uri(), tmp_path / "a" / "mine.pt", progress=False) == expected
    assert fetch_file(str(source), tmp_path / "b" / "mine.pt", sha256=expected, progress=False) == expected
    assert (tmp_path / "b" / "mine.pt").read_bytes() == PAYLOAD
    with pytest.raises(ValueError, match=r"model file .*absent\.pt does not exist; fix the path"):
        fetch_file((tmp_path / "absent.pt").as_uri(), tmp_path / "c" / "absent.pt", progress=False)
