"""ringlet.integrations.aiohttp.save_upload: a part of request.multipart()
streamed to a file, or a FileField of request.post() copied to one; the
same bytes as aiohttp's own request.post() gives, whole or not at all, and
no thread on the way."""

import base64
import concurrent.futures
import contextlib
import io
import os
import threading

import pytest

pytest.importorskip("aiohttp", reason="the aiohttp integration needs aiohttp (ringlet[aiohttp])")

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402
from aiohttp.test_utils import TestClient, TestServer  # noqa: E402
from multidict import CIMultiDict, CIMultiDictProxy  # noqa: E402

from conftest import check_failed_save, no_thread  # noqa: E402
from ringlet.integrations.aiohttp import save_upload  # noqa: E402

DATA = bytes(range(256)) * 12289  # 3 MiB + 256: several of save_upload's 1 MiB chunks


def _names(folder):
    return sorted(os.listdir(folder))


def _upload_app(folder, how, guard=None):
    """An app whose POST /{name} saves the request's first file to folder/name,
    from request.multipart() ("part") or request.post() ("field")."""
    async def handler(request):
        target = folder / request.match_info["name"]
        if how == "part":
            upload = await (await request.multipart()).next()
        else:
            upload = (await request.post())["file"]
        with guard() if guard else contextlib.nullcontext():
            written = await save_upload(upload, target)
        return web.json_response({"written": written})

    app = web.Application(client_max_size=1 << 30)
    app.router.add_post("/{name}", handler)
    return app


async def _post(app, name, body):
    async with TestClient(TestServer(app)) as client:
        async with client.post(f"/{name}", data=body) as response:
            return response.status, await response.json()


def _form(data):
    form = aiohttp.FormData()
    form.add_field("file", io.BytesIO(data), filename="upload.bin", content_type="application/octet-stream")
    return form


@pytest.mark.parametrize("how", ["part", "field"])
@pytest.mark.parametrize("size", [0, 1, 4096, len(DATA)])
def test_saves_the_whole_upload(tmp_path, run, how, size):
    folder = tmp_path / "files"
    folder.mkdir()
    status, reply = run(_post(_upload_app(folder, how), "saved.bin", _form(DATA[:size])))
    assert (status, reply) == (200, {"written": size})
    assert (folder / "saved.bin").read_bytes() == DATA[:size]
    assert _names(folder) == ["saved.bin"]


def test_a_base64_part_is_decoded_as_request_post_decodes_it(tmp_path, run):
    """A part sent with Content-Transfer-Encoding: base64 (as some clients
    do): save_upload writes what aiohttp's request.post() gives."""
    folder = tmp_path / "files"
    folder.mkdir()

    def body():
        writer = aiohttp.MultipartWriter("form-data")
        part = writer.append(base64.b64encode(DATA[:100_000]), {"Content-Type": "application/octet-stream"})
        part.set_content_disposition("form-data", name="file", filename="upload.bin")
        part.headers["Content-Transfer-Encoding"] = "base64"
        return writer

    for how, name in [("part", "streamed"), ("field", "posted")]:
        assert run(_post(_upload_app(folder, how), name, body())) == (200, {"written": 100_000})
    assert (folder / "streamed").read_bytes() == (folder / "posted").read_bytes() == DATA[:100_000]


def _field(file):
    return web.FileField("file", "upload.bin", file, "application/octet-stream", CIMultiDictProxy(CIMultiDict()))


def test_a_field_is_copied_from_its_position(tmp_path, run):
    file = io.BytesIO(DATA)
    file.read(1000)
    assert run(save_upload(_field(file), tmp_path / "rest")) == len(DATA) - 1000
    assert (tmp_path / "rest").read_bytes() == DATA[1000:]
    assert file.read() == b""


def test_replaces_an_existing_file(tmp_path, run):
    (tmp_path / "saved.bin").write_bytes(b"old content, longer than the new")
    assert run(save_upload(_field(io.BytesIO(b"new")), tmp_path / "saved.bin")) == 3
    assert (tmp_path / "saved.bin").read_bytes() == b"new"


def test_missing_directory_raises_and_creates_nothing(tmp_path, run):
    with pytest.raises(FileNotFoundError):
        run(save_upload(_field(io.BytesIO(b"data")), tmp_path / "nowhere" / "saved.bin"))
    assert _names(tmp_path) == []


def test_anything_else_is_refused(tmp_path, run):
    with pytest.raises(TypeError, match="BodyPartReader or a FileField, not bytes"):
        run(save_upload(b"data", tmp_path / "saved.bin"))
    assert _names(tmp_path) == []


@pytest.mark.parametrize("action", ["fail", "cancel"])
@pytest.mark.parametrize("keep_partial", [False, True])
def test_failed_or_cancelled_save(tmp_path, run, action, keep_partial):
    check_failed_save(run, tmp_path, lambda upload, target: save_upload(_field(upload), target, keep_partial=keep_partial),
                      DATA, action, keep_partial)


class _NoThreads:
    """While saving: no executor job, and no new thread."""

    def __enter__(self):
        self.submit = concurrent.futures.ThreadPoolExecutor.submit
        concurrent.futures.ThreadPoolExecutor.submit = no_thread  # run_in_executor's way in, any loop
        self.threads = set(threading.enumerate())  # a thread may end meanwhile: none may start
        return self

    def __exit__(self, *exc_info):
        concurrent.futures.ThreadPoolExecutor.submit = self.submit
        assert set(threading.enumerate()) <= self.threads
        return False


def test_a_streamed_part_needs_no_thread(tmp_path, backend_name, run):
    if not backend_name.startswith("io_uring"):
        pytest.skip("the thread backend does its I/O on threads by design (RINGLET_BACKEND=threads)")
    folder = tmp_path / "files"
    folder.mkdir()
    assert run(_post(_upload_app(folder, "part", _NoThreads), "saved.bin", _form(DATA))) == (
        200, {"written": len(DATA)})
    assert (folder / "saved.bin").read_bytes() == DATA
