"""ringlet.integrations.starlette.FileResponse against the stock
starlette.responses.FileResponse, request by request, with Starlette's own
TestClient, in a Starlette app and in a FastAPI app."""

import os
import random
import re
import threading
from email.utils import formatdate

import pytest

starlette = pytest.importorskip("starlette", reason="the Starlette integration needs starlette (ringlet[starlette])")
pytest.importorskip("httpx", reason="Starlette's TestClient needs httpx")

from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import FileResponse as StockFileResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from conftest import asgi_request, cancelled_request, refuse_threads  # noqa: E402
from ringlet.integrations.starlette import FileResponse as RingletFileResponse  # noqa: E402

# Sizes below each class's chunk size, one byte over, and an exact multiple of both.
SIZES = {"empty.bin": 0, "page.txt": 4096, "odd.html": StockFileResponse.chunk_size + 1,
         "over.css": RingletFileResponse.chunk_size + 1, "mib.bin": 1 << 20}

# How each response is built from the path, by name (the route's ?variant=).
VARIANTS = {
    "plain": lambda path: {},
    "filename": lambda path: {"filename": "report.pdf"},
    "unicode_filename": lambda path: {"filename": "résumé 1.txt", "content_disposition_type": "inline"},
    "media_type": lambda path: {"media_type": "text/x-custom"},
    "headers": lambda path: {"headers": {"x-extra": "1", "etag": '"fixed"', "accept-ranges": "none"}},
    "stat_result": lambda path: {"stat_result": os.stat(path)},
    "status_201": lambda path: {"status_code": 201},
}


def _date(offset: float) -> str:
    return formatdate(offset, usegmt=True)


# (method, request headers); "{etag}" and "{lm}" are filled from the file's own headers.
REQUESTS = {
    "get": ("GET", {}),
    "head": ("HEAD", {}),
    "post": ("POST", {"range": "bytes=0-9"}),
    "range_first": ("GET", {"range": "bytes=0-99"}),
    "range_open_end": ("GET", {"range": "bytes=100-"}),
    "range_suffix": ("GET", {"range": "bytes=-100"}),
    "range_one_byte": ("GET", {"range": "bytes=0-0"}),
    "range_past_end": ("GET", {"range": "bytes=10-99999999"}),
    "range_head": ("HEAD", {"range": "bytes=3-70000"}),
    "ranges_two": ("GET", {"range": "bytes=0-9, 200-299"}),
    "ranges_overlapping": ("GET", {"range": "bytes=100-110,0-10,5-20"}),
    "ranges_head": ("HEAD", {"range": "bytes=0-9,20-29"}),
    "range_unsatisfiable": ("GET", {"range": "bytes=99999999-"}),
    "range_backwards": ("GET", {"range": "bytes=50-10"}),
    "range_other_unit": ("GET", {"range": "items=0-1"}),
    "range_empty": ("GET", {"range": "bytes="}),
    "range_junk": ("GET", {"range": "bytes=a-b,3-4"}),
    "if_range_etag": ("GET", {"range": "bytes=0-9", "if-range": "{etag}"}),
    "if_range_date": ("GET", {"range": "bytes=0-9", "if-range": "{lm}"}),
    "if_range_stale": ("GET", {"range": "bytes=0-9", "if-range": '"other"'}),
    "if_range_weak": ("GET", {"range": "bytes=0-9", "if-range": "W/{etag}"}),
    "if_none_match": ("GET", {"if-none-match": "{etag}"}),
    "if_modified_since": ("GET", {"if-modified-since": _date(4102444800)}),
}

COMPARED = ("content-length", "content-type", "etag", "last-modified", "accept-ranges", "content-range",
            "content-disposition", "x-extra")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("static")
    for name, size in SIZES.items():
        (root / name).write_bytes(bytes((i * 7 + 3) % 251 for i in range(size)))
    (root / "subdir").mkdir()
    return root


def _endpoint(cls, folder):
    async def endpoint(request: Request):
        path = folder / request.path_params["name"]
        return cls(path, **VARIANTS[request.query_params.get("variant", "plain")](path))
    return endpoint


def _starlette_app(folder):
    methods = ["GET", "HEAD", "POST"]
    return Starlette(routes=[Route("/stock/{name}", _endpoint(StockFileResponse, folder), methods=methods),
                             Route("/ringlet/{name}", _endpoint(RingletFileResponse, folder), methods=methods)])


def _fastapi_app(folder):
    fastapi = pytest.importorskip("fastapi", reason="the FastAPI run needs fastapi (ringlet[fastapi])")
    app = fastapi.FastAPI()
    for prefix, cls in (("stock", StockFileResponse), ("ringlet", RingletFileResponse)):
        app.add_api_route(f"/{prefix}/{{name}}", _endpoint(cls, folder), methods=["GET", "HEAD", "POST"],
                          response_class=cls)
    return app


@pytest.fixture(scope="module", params=["starlette", "fastapi"])
def client(request, folder):
    app = _starlette_app(folder) if request.param == "starlette" else _fastapi_app(folder)
    with TestClient(app) as test_client:
        yield test_client


def _normalised(response):
    """status, compared headers and body, with a multipart boundary (random
    in both classes) replaced by a fixed string of the same length."""
    headers = {name: response.headers.get(name) for name in COMPARED}
    body = response.content
    match = re.match(r"multipart/byteranges; boundary=(\w+)$", headers["content-type"] or "")
    if match:
        boundary = match.group(1)
        fixed = "B" * len(boundary)
        headers["content-type"] = headers["content-type"].replace(boundary, fixed)
        body = body.replace(boundary.encode(), fixed.encode())
    return response.status_code, headers, body


def _fill(headers, etag, last_modified):
    return {k: v.replace("{etag}", etag).replace("{lm}", last_modified) for k, v in headers.items()}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("name", sorted(SIZES))
@pytest.mark.parametrize("kind", sorted(REQUESTS))
def test_same_response_as_stock(client, folder, name, kind, variant):
    method, headers = REQUESTS[kind]
    probe = client.head(f"/stock/{name}")
    headers = _fill(headers, probe.headers["etag"], probe.headers["last-modified"])
    url = f"/{{}}/{name}?variant={variant}"
    stock = client.request(method, url.format("stock"), headers=headers)
    ours = client.request(method, url.format("ringlet"), headers=headers)
    assert _normalised(ours) == _normalised(stock)


def _random_range(rng, size):
    """One range of a Range header: in the file, past it, past 2**64, open at
    either end, or junk."""
    a, b = rng.randint(0, size + 2), rng.randint(0, size + 2)
    big = rng.choice([size, size + 1, max(size - 1, 0), 0, 1, 99999999, 2**63, 2**64 + 5])
    kind = rng.random()
    if kind < 0.2:
        return f"-{rng.choice([a, big])}"
    if kind < 0.4:
        return f"{rng.choice([a, big])}-"
    if kind < 0.5:
        return rng.choice(["", "-", "a-b", " 1-2", "1 - 2", "01-02", "+1-2", "1-+2", "0x1-2", "1_0-20"])
    return f"{rng.choice([a, big])}-{rng.choice([b, big])}"


@pytest.mark.parametrize("seed", range(4))
def test_same_response_as_stock_on_random_ranges(client, seed):
    """Random Range headers, of one to four ranges, some with If-Range, in
    every variant: the response is the stock class's (the range parsing is
    inherited; the bodies and headers are ringlet's own code)."""
    rng = random.Random(seed)
    differences, statuses = [], set()
    for _ in range(60):
        name = rng.choice(sorted(SIZES))
        unit = rng.choice(["bytes=", "bytes=", "BYTES=", "bytes =", " bytes="])
        ranges = rng.choice([",", ", ", " ,"]).join(_random_range(rng, SIZES[name]) for _ in range(rng.randint(1, 4)))
        headers = {"range": unit + ranges}
        if rng.random() < 0.2:
            headers["if-range"] = rng.choice(['"x"', 'W/"x"', "Thu, 01 Jan 1970 00:00:00 GMT", "garbage"])
        method, variant = rng.choice(["GET", "GET", "HEAD"]), rng.choice(sorted(VARIANTS))
        url = f"/{{}}/{name}?variant={variant}"
        stock = _normalised(client.request(method, url.format("stock"), headers=headers))
        ours = _normalised(client.request(method, url.format("ringlet"), headers=headers))
        statuses.add(stock[0])
        if ours != stock:
            differences.append((name, method, variant, headers, ours[:2], stock[:2]))
    assert differences == []
    assert {200, 206, 416} <= statuses  # whole files, ranges (one or several) and refusals


def test_multipart_parts_are_the_file_ranges(client, folder):
    """The normalised comparison above could hide a body both get wrong:
    check one multipart body's parts against the file itself."""
    data = (folder / "odd.html").read_bytes()
    response = client.get("/ringlet/odd.html", headers={"range": "bytes=0-9,65530-"})
    assert response.status_code == 206
    boundary = response.headers["content-type"].split("boundary=")[1]
    parts = response.content.split(f"--{boundary}".encode())
    assert parts[0] == b"" and parts[-1] == b"--"
    bodies = [part.split(b"\r\n\r\n", 1)[1][:-2] for part in parts[1:-1]]
    assert bodies == [data[0:10], data[65530:]]
    assert b"Content-Range: bytes 65530-65536/65537" in parts[2]
    assert int(response.headers["content-length"]) == len(response.content)


@pytest.mark.parametrize("name", ["missing.txt", "subdir"])
def test_missing_file_or_directory_raises_as_stock(client, name):
    with pytest.raises(RuntimeError) as stock:
        client.get(f"/stock/{name}")
    with pytest.raises(RuntimeError) as ours:
        client.get(f"/ringlet/{name}")
    assert str(ours.value) == str(stock.value)


# -- no thread ---------------------------------------------------------------------


def test_no_thread_is_used(folder, monkeypatch, backend_name, run):
    """Serve every request kind by calling the ASGI app in this thread's
    loop, with anyio's thread pool and the loop's executor made to fail, and
    the thread count watched."""
    if not backend_name.startswith("io_uring"):
        pytest.skip("the thread backend does its I/O on threads by design (RINGLET_BACKEND=threads)")
    refuse_threads(monkeypatch)
    app = _starlette_app(folder)
    probe = os.stat(folder / "odd.html")

    async def main():
        threads = set(threading.enumerate())  # a thread may end meanwhile: none may start
        etag = f'"{os.urandom(1).hex()}"'
        last_modified = _date(probe.st_mtime)
        served = 0
        for kind, (method, headers) in sorted(REQUESTS.items()):
            for name in SIZES:
                messages = await asgi_request(app, method, f"/ringlet/{name}", _fill(headers, etag, last_modified))
                assert messages[0]["type"] == "http.response.start"
                assert messages[-1].get("more_body", False) is False
                served += 1
        assert set(threading.enumerate()) <= threads
        return served

    assert run(main()) == len(REQUESTS) * len(SIZES)


def _open_fds():
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("cancel_at", [1, 2, 3])
def test_cancelled_response_closes_its_file(folder, cancel_at, run):
    """A response cancelled mid-body (a client gone, a timeout) closes the
    file it opened: no descriptor is left behind."""
    app = _starlette_app(folder)

    async def main():
        import ringlet
        ringlet.get_engine()  # its own descriptors (the ring, ...) before counting
        before = _open_fds()
        sent = [await cancelled_request(app, "/ringlet/mib.bin", cancel_at) for _ in range(20)]
        assert _open_fds() == before
        return sent

    assert run(main()) == [cancel_at] * 20
