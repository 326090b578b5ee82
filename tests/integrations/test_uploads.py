"""ringlet.integrations.starlette.save_upload: an UploadFile (Starlette's
or FastAPI's) streamed to disk through ringlet, whole or not at all."""

import io
import os
import tempfile
import threading

import pytest

pytest.importorskip("starlette", reason="save_upload needs starlette (ringlet[starlette])")

from starlette.datastructures import UploadFile  # noqa: E402

from conftest import check_failed_save, refuse_threads  # noqa: E402
from ringlet.integrations.starlette import save_upload  # noqa: E402

DATA = bytes(range(256)) * 12289  # 3 MiB + 256: several of save_upload's 1 MiB chunks


def _spooled(data, max_size):
    """An UploadFile as Starlette's form parser makes it: a spooled file,
    in memory up to max_size bytes, on disk past it; at position 0."""
    file = tempfile.SpooledTemporaryFile(max_size=max_size)
    file.write(data)
    file.seek(0)
    return UploadFile(file, size=len(data), filename="upload.bin")


def _names(folder):
    return sorted(os.listdir(folder))


@pytest.mark.parametrize("where", ["memory", "disk"])
@pytest.mark.parametrize("size", [0, 1, 4096, len(DATA)])
def test_saves_whole_upload(tmp_path, run, where, size):
    upload = _spooled(DATA[:size], max_size=1 << 30 if where == "memory" else 1)
    assert upload.file._rolled == (where == "disk" and size > 1)
    target = tmp_path / "saved.bin"
    assert run(save_upload(upload, target)) == size
    assert target.read_bytes() == DATA[:size]
    assert _names(tmp_path) == ["saved.bin"]
    assert upload.file.read() == b""  # its position is at its end, as after upload.read()


@pytest.mark.parametrize("where", ["memory", "disk"])
def test_saves_from_the_current_position(tmp_path, run, where):
    upload = _spooled(DATA, max_size=1 << 30 if where == "memory" else 1)
    upload.file.read(1000)
    assert run(save_upload(upload, tmp_path / "rest")) == len(DATA) - 1000
    assert (tmp_path / "rest").read_bytes() == DATA[1000:]


def test_plain_file_and_bytesio(tmp_path, run):
    with open(tmp_path / "source", "w+b") as source:
        source.write(DATA)
        source.seek(0)
        assert run(save_upload(UploadFile(source), tmp_path / "a")) == len(DATA)
    assert run(save_upload(UploadFile(io.BytesIO(DATA[:10])), tmp_path / "b")) == 10
    assert (tmp_path / "a").read_bytes() == DATA and (tmp_path / "b").read_bytes() == DATA[:10]


def test_replaces_an_existing_file(tmp_path, run):
    target = tmp_path / "saved.bin"
    target.write_bytes(b"old content, longer than the new")
    assert run(save_upload(_spooled(b"new", 100), target)) == 3
    assert target.read_bytes() == b"new"


def test_missing_directory_raises_and_creates_nothing(tmp_path, run):
    with pytest.raises(FileNotFoundError):
        run(save_upload(_spooled(b"data", 100), tmp_path / "nowhere" / "saved.bin"))
    assert _names(tmp_path) == []


@pytest.mark.parametrize("action", ["fail", "cancel"])
@pytest.mark.parametrize("keep_partial", [False, True])
def test_failed_or_cancelled_save(tmp_path, run, action, keep_partial):
    check_failed_save(run, tmp_path, lambda upload, target: save_upload(UploadFile(upload), target, keep_partial=keep_partial),
                      DATA, action, keep_partial)


def test_no_thread_is_used(tmp_path, monkeypatch, backend_name, run):
    if not backend_name.startswith("io_uring"):
        pytest.skip("the thread backend does its I/O on threads by design (RINGLET_BACKEND=threads)")
    refuse_threads(monkeypatch)

    async def main():
        threads = set(threading.enumerate())  # a thread may end meanwhile: none may start
        sizes = []
        for i, max_size in enumerate([1 << 30, 1]):  # in memory, then on disk
            sizes.append(await save_upload(_spooled(DATA, max_size), tmp_path / f"saved{i}"))
        assert set(threading.enumerate()) <= threads
        return sizes

    assert run(main()) == [len(DATA)] * 2
    assert (tmp_path / "saved1").read_bytes() == DATA
