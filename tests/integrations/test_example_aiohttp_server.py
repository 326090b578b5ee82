"""examples/aiohttp_server.py runs: upload files, fetch them back (whole, a
range, HEAD), refused names, driven by aiohttp's test client."""

import pytest

pytest.importorskip("aiohttp", reason="the example is an aiohttp app (ringlet[aiohttp])")

from conftest import load_example  # noqa: E402
import aiohttp  # noqa: E402
from aiohttp.test_utils import TestClient, TestServer  # noqa: E402


@pytest.fixture(scope="module")
def example():
    return load_example("aiohttp_server")


def _form(name, data):
    form = aiohttp.FormData()
    form.add_field("file", data, filename=name, content_type="application/octet-stream")
    return form


def test_upload_then_download(example, tmp_path, run):
    data = bytes(range(256)) * 8192  # 2 MiB: several of save_upload's chunks

    async def main():
        async with TestClient(TestServer(example.create_app(tmp_path / "static"))) as client:
            small = await (await client.post("/upload", data=_form("notes.txt", b"hello, ring\n"))).json()
            big = await (await client.post("/upload", data=_form("blob.bin", data))).json()
            whole = await client.get("/files/blob.bin")
            text = await client.get("/files/notes.txt")
            part = await client.get("/files/blob.bin", headers={"Range": "bytes=100-199"})
            head = await client.head("/files/blob.bin")
            missing = await client.get("/files/missing.txt")
            outside = await client.get("/files/..%2Foutside")
            hidden = await client.post("/upload", data=_form(".hidden", b"x"))
            return (small, big, (whole.status, await whole.read()), (await text.text(), text.headers["Content-Type"]),
                    (part.status, await part.read()), (head.status, head.headers["Content-Length"]),
                    missing.status, outside.status, hidden.status)

    small, big, whole, text, part, head, missing, outside, hidden = run(main())
    assert small == {"name": "notes.txt", "written": 12}
    assert big == {"name": "blob.bin", "written": len(data)}
    assert whole == (200, data)
    assert text[0] == "hello, ring\n" and text[1].startswith("text/plain")
    assert part == (206, data[100:200])
    assert head == (200, str(len(data)))
    assert (missing, outside, hidden) == (404, 404, 400)
    assert sorted(p.name for p in (tmp_path / "static").iterdir()) == ["blob.bin", "notes.txt"]
