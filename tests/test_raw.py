"""Where raw files come from, including downloads from a local mirror (a loopback HTTP server)."""

import gzip
import http.server
import threading

import pytest

from hf_fmnist.data import idx, raw
from hf_fmnist.data.raw import DownloadError


class Mirror:
    """A threaded HTTP/1.1 file server on 127.0.0.1 with Range support and switchable faults."""

    def __init__(self, files: dict[str, bytes]):
        self.files = dict(files)
        self.requests: list[tuple[str, str | None]] = []
        self.drop_after: int | None = None  # send only this many bytes of the body, then close
        self.ignore_range = False  # answer every request with the whole file (200), as some servers do
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                name = self.path.rsplit("/", 1)[-1]
                mirror.requests.append((name, self.headers.get("Range")))
                if name not in mirror.files:
                    self.send_error(404)
                    return
                body, status = mirror.files[name], 200
                if (rng := self.headers.get("Range")) and not mirror.ignore_range:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_error(416)
                        return
                    body, status = body[start:], 206
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if mirror.drop_after is not None:
                    self.wfile.write(body[: mirror.drop_after])
                    self.wfile.flush()
                    self.close_connection = True
                    mirror.drop_after = None
                    return
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/data/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def mirror(synthetic):
    m = Mirror({f"{name}.gz": synthetic.path(name).read_bytes() for name in idx.SHA256})
    yield m
    m.close()


def _unused_url() -> str:
    import socket

    with socket.socket() as s:  # bind then close: nothing listens on this port afterwards
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def test_data_dir_comes_first(synthetic, tmp_path, monkeypatch):
    monkeypatch.setenv(raw.ENV_DATA_DIR, str(tmp_path / "elsewhere"))
    files = raw.locate(synthetic.folder, debian_dir=tmp_path / "none")
    assert files[idx.FILENAMES["train"][0]] == synthetic.folder / "train-images-idx3-ubyte.gz"


def test_env_var_then_debian(synthetic, tmp_path, monkeypatch):
    monkeypatch.setenv(raw.ENV_DATA_DIR, str(synthetic.folder))
    assert raw.locate(debian_dir=tmp_path / "none")["t10k-labels-idx1-ubyte"].parent == synthetic.folder
    monkeypatch.delenv(raw.ENV_DATA_DIR)
    assert raw.locate(debian_dir=synthetic.folder)["t10k-labels-idx1-ubyte"].parent == synthetic.folder


def test_env_var_pointing_nowhere_is_an_error_not_a_fallback(synthetic, tmp_path, monkeypatch):
    monkeypatch.setenv(raw.ENV_DATA_DIR, str(tmp_path / "typo"))
    with pytest.raises(idx.IdxError, match=r"HF_FMNIST_DATA_DIR"):
        raw.locate(debian_dir=synthetic.folder)


def test_download_verifies_and_renames(mirror, synthetic, tmp_path):
    target = tmp_path / "cache"
    files = raw.locate(
        mirrors=[mirror.url], download_dir=target, checksums=synthetic.checksums, debian_dir=tmp_path / "none"
    )
    assert sorted(p.name for p in target.iterdir() if p.name != ".lock") == sorted(f"{n}.gz" for n in idx.SHA256)
    assert files["train-images-idx3-ubyte"].read_bytes() == synthetic.path("train-images-idx3-ubyte").read_bytes()
    # a second call finds the verified files and does not download again
    before = len(mirror.requests)
    raw.download(target, mirrors=[mirror.url], checksums=synthetic.checksums)
    assert len(mirror.requests) == before


def test_download_resumes_a_partial_file(mirror, synthetic, tmp_path):
    name = "train-images-idx3-ubyte"
    whole = synthetic.path(name).read_bytes()
    target = tmp_path / "cache"
    target.mkdir()
    (target / f"{name}.gz.part").write_bytes(whole[:1000])
    raw.download(target, mirrors=[mirror.url], checksums=synthetic.checksums)
    assert (name + ".gz", "bytes=1000-") in mirror.requests
    assert (target / f"{name}.gz").read_bytes() == whole
    assert not list(target.glob("*.part"))


def test_a_server_ignoring_the_range_restarts_the_file_instead_of_appending(mirror, synthetic, tmp_path):
    """A 200 reply to a Range request is the whole file: appended to the partial one it would double the start."""
    name = "train-images-idx3-ubyte"
    whole = synthetic.path(name).read_bytes()
    target = tmp_path / "cache"
    target.mkdir()
    (target / f"{name}.gz.part").write_bytes(whole[:1000])
    mirror.ignore_range = True
    raw.download(target, mirrors=[mirror.url], checksums=synthetic.checksums)
    assert (name + ".gz", "bytes=1000-") in mirror.requests
    assert (target / f"{name}.gz").read_bytes() == whole


def test_dropped_connection_keeps_part_and_next_run_completes(mirror, synthetic, tmp_path):
    target = tmp_path / "cache"
    mirror.drop_after = 700
    with pytest.raises(DownloadError, match="connection closed after 700"):
        raw.download(target, mirrors=[mirror.url], checksums=synthetic.checksums)
    assert not (target / "train-images-idx3-ubyte.gz").exists()  # never a half file under the final name
    raw.download(target, mirrors=[mirror.url], checksums=synthetic.checksums)
    assert ("train-images-idx3-ubyte.gz", "bytes=700-") in mirror.requests
    assert idx.read_split(target, "train", checksums=synthetic.checksums).images.shape == (40, 28, 28)


def test_bad_copy_is_rejected_and_next_mirror_used(synthetic, tmp_path):
    good = {f"{n}.gz": synthetic.path(n).read_bytes() for n in idx.SHA256}
    bad = dict(good, **{"t10k-labels-idx1-ubyte.gz": gzip.compress(b"garbage")})
    first, second = Mirror(bad), Mirror(good)
    try:
        raw.download(tmp_path / "c", mirrors=[first.url, second.url], checksums=synthetic.checksums)
    finally:
        first.close()
        second.close()
    assert ("t10k-labels-idx1-ubyte.gz", None) in second.requests
    assert (tmp_path / "c" / "t10k-labels-idx1-ubyte.gz").read_bytes() == good["t10k-labels-idx1-ubyte.gz"]


def test_offline_error_names_the_three_ways(tmp_path):
    with pytest.raises(DownloadError) as info:
        raw.locate(mirrors=[_unused_url()], download_dir=tmp_path / "c", debian_dir=tmp_path / "none")
    message = str(info.value)
    for way in ("--data-dir", raw.ENV_DATA_DIR, "apt-get install dataset-fashion-mnist"):
        assert way in message
    assert "\n" not in message
    assert not list((tmp_path / "c").glob("*.gz"))
