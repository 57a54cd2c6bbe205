"""`fetch_dataset` against a local HTTP server: good, corrupt and interrupted downloads."""

from __future__ import annotations

import hashlib
import http.server
import threading

import pytest

from crystalgen.cli.main import main
from crystalgen.data.benchmarks import BENCHMARKS, git_blob_id
from crystalgen.data.fetch import FetchError, fetch_dataset

GOOD = b"material_id,cif\n1,\"data_x\n_cell_length_a 4\n\"\n" * 200
BAD = GOOD.replace(b"4", b"5")


def blob_id(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


class Handler(http.server.BaseHTTPRequestHandler):
    """/good/<name>/<split>.csv, /corrupt/..., /interrupted/... (announces more bytes than it sends), else 404."""

    def do_GET(self):  # noqa: N802 (http.server's naming)
        mode = self.path.split("/")[1]
        if mode not in ("good", "corrupt", "interrupted"):
            self.send_error(404)
            return
        body = BAD if mode == "corrupt" else GOOD
        self.send_response(200)
        self.send_header("Content-Length", str(len(body) + (1000 if mode == "interrupted" else 0)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if mode == "interrupted" else body)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def synthetic_blob(monkeypatch):
    """The test file stands in for the official perov_5 val file."""
    monkeypatch.setitem(BENCHMARKS["perov_5"].blob_ids, "val", blob_id(GOOD))


def test_good_download_is_verified_and_kept(server, tmp_path):
    (fetched,) = fetch_dataset("perov_5", tmp_path, base_url=f"{server}/good", splits=["val"], progress=False)
    assert fetched.downloaded and fetched.path == tmp_path / "perov_5" / "val.csv"
    assert fetched.path.read_bytes() == GOOD and git_blob_id(fetched.path) == blob_id(GOOD)
    again = fetch_dataset("perov_5", tmp_path, base_url=f"{server}/corrupt", splits=["val"], progress=False)
    assert not again[0].downloaded  # already the official file: nothing downloaded
    assert sorted(p.name for p in (tmp_path / "perov_5").iterdir()) == ["val.csv"]


@pytest.mark.parametrize(("mode", "message"), [("corrupt", "corrupt or not the official one"),
                                               ("interrupted", "interrupted after"),
                                               ("missing", "HTTP 404")])
def test_failed_download_names_the_file_and_leaves_nothing(server, tmp_path, mode, message):
    with pytest.raises(FetchError, match=message) as info:
        fetch_dataset("perov_5", tmp_path, base_url=f"{server}/{mode}", splits=["val"], progress=False)
    assert "perov_5/val.csv" in str(info.value)
    assert list((tmp_path / "perov_5").iterdir()) == []  # no half-written or temporary file


def test_failed_download_keeps_the_existing_file(server, tmp_path):
    target = tmp_path / "perov_5" / "val.csv"
    target.parent.mkdir()
    target.write_bytes(b"my own edited copy")
    with pytest.raises(FetchError, match="is not the official file.*--force"):
        fetch_dataset("perov_5", tmp_path, base_url=f"{server}/good", splits=["val"], progress=False)
    with pytest.raises(FetchError, match="interrupted"):
        fetch_dataset("perov_5", tmp_path, base_url=f"{server}/interrupted", splits=["val"], force=True, progress=False)
    assert target.read_bytes() == b"my own edited copy"
    fetch_dataset("perov_5", tmp_path, base_url=f"{server}/good", splits=["val"], force=True, progress=False)
    assert target.read_bytes() == GOOD


def test_cli_fetch_uses_the_environment_base_url(server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CRYSTALGEN_FETCH_BASE_URL", f"{server}/good")
    assert main(["data", "fetch", "perov_5", "--split", "val", "--dest", str(tmp_path)]) == 0
    assert "downloaded and verified" in capsys.readouterr().out
    monkeypatch.setenv("CRYSTALGEN_FETCH_BASE_URL", f"{server}/corrupt")
    (tmp_path / "perov_5" / "val.csv").unlink()
    assert main(["data", "fetch", "perov_5", "--split", "val", "--dest", str(tmp_path)]) == 2
    assert "corrupt" in capsys.readouterr().err


def test_unknown_dataset_is_refused(tmp_path):
    with pytest.raises(ValueError, match="fetchable datasets: perov_5, carbon_24, mp_20"):
        fetch_dataset("embedded", tmp_path)
