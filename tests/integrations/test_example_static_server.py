"""examples/static_server.py runs: upload files, fetch them back (whole, a
range, HEAD), refused names, driven by Starlette's TestClient."""

import pytest

pytest.importorskip("fastapi", reason="the example is a FastAPI app (ringlet[fastapi])")
pytest.importorskip("multipart", reason="FastAPI's UploadFile needs python-multipart (ringlet[fastapi])")
pytest.importorskip("httpx", reason="Starlette's TestClient needs httpx")

from conftest import load_example  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402


@pytest.fixture(scope="module")
def example():
    return load_example("static_server")


def test_upload_then_download(example, tmp_path):
    data = bytes(range(256)) * 8192  # 2 MiB: past Starlette's 1 MiB spool, so the upload spills to disk
    with TestClient(example.create_app(tmp_path / "static")) as client:
        small = client.post("/upload", files={"file": ("notes.txt", b"hello, ring\n", "text/plain")})
        big = client.post("/upload", files={"file": ("blob.bin", data, "application/octet-stream")})
        assert small.json() == {"name": "notes.txt", "written": 12}
        assert big.json() == {"name": "blob.bin", "written": len(data)}

        whole = client.get("/files/blob.bin")
        assert whole.status_code == 200 and whole.content == data
        text = client.get("/files/notes.txt")
        assert text.text == "hello, ring\n" and text.headers["content-type"].startswith("text/plain")
        part = client.get("/files/blob.bin", headers={"range": "bytes=100-199"})
        assert part.status_code == 206 and part.content == data[100:200]
        head = client.head("/files/blob.bin")
        assert head.status_code == 200 and head.headers["content-length"] == str(len(data)) and head.content == b""

        assert client.get("/files/missing.txt").status_code == 404
        assert client.get("/files/..%2Foutside").status_code == 404  # decoded to ../outside: refused
        assert client.post("/upload", files={"file": (".hidden", b"x")}).status_code == 400
    assert sorted(p.name for p in (tmp_path / "static").iterdir()) == ["blob.bin", "notes.txt"]
