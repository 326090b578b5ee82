"""ringlet.integrations.aiohttp.FileResponse against the stock
aiohttp.web.FileResponse, request by request, with aiohttp's own test
server and client (aiohttp.test_utils)."""

import asyncio
import concurrent.futures
import gzip
import os
import random
import threading
from email.utils import formatdate

import pytest

pytest.importorskip("aiohttp", reason="the aiohttp integration needs aiohttp (ringlet[aiohttp])")

from aiohttp import web  # noqa: E402
from aiohttp.test_utils import TestClient, TestServer  # noqa: E402

from ringlet.integrations.aiohttp import FileResponse as RingletFileResponse  # noqa: E402

# 256 KiB is the classes' default chunk size: files below it, over it, and an exact multiple.
SIZES = {"empty.bin": 0, "page.txt": 4096, "odd.html": 300001, "big.bin": 1 << 19}

VARIANTS = {
    "plain": {},
    "small_chunks": {"chunk_size": 1000},
    "status": {"status": 203, "reason": "Fine"},
    "headers": {"headers": {"X-Extra": "1", "Content-Type": "text/x-custom"}},
}

NOW = 4102444800  # 2100-01-01: after any file's mtime

# (method, request headers); "{etag}" is filled in from the file's own ETag.
REQUESTS = {
    "get": ("GET", {}),
    "head": ("HEAD", {}),
    "range_first": ("GET", {"Range": "bytes=0-99"}),
    "range_open_end": ("GET", {"Range": "bytes=100-"}),
    "range_suffix": ("GET", {"Range": "bytes=-100"}),
    "range_suffix_long": ("GET", {"Range": "bytes=-99999999"}),
    "range_past_end": ("GET", {"Range": "bytes=10-99999999"}),
    "range_chunks": ("GET", {"Range": "bytes=1000-299999"}),
    "range_head": ("HEAD", {"Range": "bytes=3-70000"}),
    "ranges_two": ("GET", {"Range": "bytes=0-9,200-299"}),
    "range_unsatisfiable": ("GET", {"Range": "bytes=99999999-"}),
    "range_backwards": ("GET", {"Range": "bytes=50-10"}),
    "range_junk": ("GET", {"Range": "bytes=a-b"}),
    "if_match": ("GET", {"If-Match": "{etag}"}),
    "if_match_other": ("GET", {"If-Match": '"other"'}),
    "if_match_any": ("GET", {"If-Match": "*"}),
    "if_none_match": ("GET", {"If-None-Match": "{etag}"}),
    "if_none_match_weak": ("GET", {"If-None-Match": "W/{etag}"}),
    "if_none_match_other": ("HEAD", {"If-None-Match": '"other"'}),
    "if_modified_since_later": ("GET", {"If-Modified-Since": formatdate(NOW, usegmt=True)}),
    "if_modified_since_earlier": ("GET", {"If-Modified-Since": formatdate(0, usegmt=True)}),
    "if_unmodified_since_earlier": ("GET", {"If-Unmodified-Since": formatdate(0, usegmt=True)}),
    "if_range_later": ("GET", {"Range": "bytes=0-9", "If-Range": formatdate(NOW, usegmt=True)}),
    "if_range_earlier": ("GET", {"Range": "bytes=0-9", "If-Range": formatdate(0, usegmt=True)}),
    "gzip": ("GET", {"Accept-Encoding": "gzip"}),
    "br_gzip": ("GET", {"Accept-Encoding": "GZIP, br"}),
    "gzip_range": ("GET", {"Accept-Encoding": "gzip", "Range": "bytes=5-"}),
    "gzip_head_etag": ("HEAD", {"Accept-Encoding": "gzip", "If-None-Match": "{etag}"}),
    "identity": ("GET", {"Accept-Encoding": "identity"}),
}

COMPARED = ("Content-Length", "Content-Type", "ETag", "Last-Modified", "Accept-Ranges", "Content-Range",
            "Content-Encoding", "Vary", "Transfer-Encoding", "X-Extra")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("static")
    for name, size in SIZES.items():
        (root / name).write_bytes(bytes((i * 7 + 3) % 251 for i in range(size)))
    # Pre-compressed siblings: page.txt has both, odd.html only .gz, and
    # big.bin a .gz that is a symbolic link (not followed: not served).
    (root / "page.txt.gz").write_bytes(gzip.compress((root / "page.txt").read_bytes()))
    (root / "page.txt.br").write_bytes(b"not really brotli, but distinct")
    (root / "odd.html.gz").write_bytes(gzip.compress((root / "odd.html").read_bytes()))
    (root / "big.bin.gz").symlink_to(root / "page.txt.gz")
    (root / "subdir").mkdir()
    os.mkfifo(root / "fifo")
    return root


class RingReads(RingletFileResponse):
    """ringlet's class with sendfile(2) off: every body through ring reads."""

    use_sendfile = False


def _app(folder):
    def endpoint(cls):
        async def handler(request):
            variant = VARIANTS[request.query.get("variant", "plain")]
            return cls(folder / request.match_info["name"], **variant)
        return handler

    app = web.Application()
    app.router.add_route("*", "/stock/{name}", endpoint(web.FileResponse))
    app.router.add_route("*", "/ringlet/{name}", endpoint(RingletFileResponse))
    app.router.add_route("*", "/ring-reads/{name}", endpoint(RingReads))
    return app


async def _fetch(client, method, url, headers):
    async with client.request(method, url, headers=headers, auto_decompress=False) as response:
        body = await response.read()
        return (response.status, response.reason, {name: response.headers.get(name) for name in COMPARED}, body)


@pytest.mark.parametrize("ours", ["ringlet", "ring-reads"])
def test_same_responses_as_stock(folder, ours, run):
    names = sorted(SIZES) + ["missing.txt", "subdir", "fifo"]

    async def main():
        compared = 0
        async with TestClient(TestServer(_app(folder))) as client:
            for name in names:
                probe = await client.head(f"/stock/{name}")
                gz_probe = await client.head(f"/stock/{name}", headers={"Accept-Encoding": "gzip"})
                for kind, (method, headers) in sorted(REQUESTS.items()):
                    etag = (gz_probe if "gzip" in kind else probe).headers.get("ETag", '"none"')
                    headers = {k: v.replace("{etag}", etag) for k, v in headers.items()}
                    for variant in sorted(VARIANTS):
                        url = f"/{{}}/{name}?variant={variant}"
                        stock = await _fetch(client, method, url.format("stock"), headers)
                        assert await _fetch(client, method, url.format(ours), headers) == stock, (
                            name, kind, variant)
                        compared += 1
        return compared

    assert run(main()) == 7 * len(REQUESTS) * len(VARIANTS)


@pytest.mark.parametrize("seed", range(2))
def test_same_responses_as_stock_on_random_preconditions(folder, seed, run):
    """Random combinations of If-Match, If-None-Match, If-Modified-Since,
    If-Unmodified-Since, Range, If-Range and Accept-Encoding: ringlet's
    precondition logic (its own code, in the stock class's order) answers as
    the stock class's, whichever headers come together."""
    rng = random.Random(seed)
    mtime = os.stat(folder / "page.txt").st_mtime
    dates = [formatdate(0, usegmt=True), formatdate(NOW, usegmt=True), formatdate(mtime, usegmt=True),
             formatdate(int(mtime) - 1, usegmt=True), formatdate(int(mtime) + 1, usegmt=True), "garbage", ""]

    async def main():
        differences, statuses = [], set()
        async with TestClient(TestServer(_app(folder))) as client:
            etags = {}
            for name in SIZES:
                for coding in ("", "gzip", "br"):
                    probe = await client.head(f"/stock/{name}", headers={"Accept-Encoding": coding},
                                              auto_decompress=False)
                    etags[name, coding] = probe.headers.get("ETag", '"none"')
            for _ in range(100):
                name = rng.choice(sorted(SIZES) + ["missing.txt"])
                tags = [tag for (n, _), tag in etags.items() if n == name] + ['"other"', "*", 'W/"x"', "garbage"]

                def tag():
                    chosen = rng.choice(tags)
                    return "W/" + chosen if chosen.startswith('"') and rng.random() < 0.2 else chosen

                headers = {}
                coding = rng.choice(["", "gzip", "br", "GZIP, br", "identity", "deflate"])
                if coding:
                    headers["Accept-Encoding"] = coding
                for key in ("If-Match", "If-None-Match"):
                    if rng.random() < 0.3:
                        headers[key] = ", ".join(tag() for _ in range(rng.randint(1, 3)))
                for key in ("If-Modified-Since", "If-Unmodified-Since"):
                    if rng.random() < 0.3:
                        headers[key] = rng.choice(dates)
                if rng.random() < 0.4:
                    headers["Range"] = rng.choice(["bytes=0-9", "bytes=5-", "bytes=-3", "bytes=9999999-",
                                                   "bytes=0-0,5-9", "bytes=a-b", "bytes=10-5"])
                    if rng.random() < 0.4:
                        headers["If-Range"] = rng.choice([tag(), rng.choice(dates)])
                method, variant = rng.choice(["GET", "GET", "HEAD"]), rng.choice(sorted(VARIANTS))
                url = f"/{{}}/{name}?variant={variant}"
                stock = await _fetch(client, method, url.format("stock"), headers)
                ours = await _fetch(client, method, url.format("ringlet"), headers)
                statuses.add(stock[0])
                if ours != stock:
                    differences.append((name, method, variant, headers, ours[:3], stock[:3]))
        return differences, statuses

    differences, statuses = run(main())
    assert differences == []
    assert {200, 206, 304, 404, 412} <= statuses


def test_statuses_cover_every_branch(folder, run):
    """The comparison above is only as good as the cases it reaches: check
    that they include each status the class can give."""
    async def main():
        seen = set()
        async with TestClient(TestServer(_app(folder))) as client:
            for name in sorted(SIZES) + ["missing.txt", "fifo"]:
                for method, headers in REQUESTS.values():
                    headers = {k: v.replace("{etag}", '"x"') for k, v in headers.items()}
                    seen.add((await _fetch(client, method, f"/ringlet/{name}", headers))[0])
        return seen

    assert run(main()) >= {200, 206, 304, 403, 404, 412, 416}


@pytest.mark.parametrize("ours", ["ringlet", "ring-reads"])
def test_body_is_the_file(folder, ours, run):
    async def main():
        async with TestClient(TestServer(_app(folder))) as client:
            plain = {"Accept-Encoding": "identity"}  # the client's default asks for gzip: odd.html.gz
            whole = await _fetch(client, "GET", f"/{ours}/odd.html?variant=small_chunks", plain)
            part = await _fetch(client, "GET", f"/{ours}/odd.html", {**plain, "Range": "bytes=1000-299999"})
            gz = await _fetch(client, "GET", f"/{ours}/page.txt", {"Accept-Encoding": "gzip"})
        return whole, part, gz

    whole, part, gz = run(main())
    data = (folder / "odd.html").read_bytes()
    assert whole[0] == 200 and whole[3] == data
    assert part[0] == 206 and part[3] == data[1000:300000]
    assert gz[2]["Content-Encoding"] == "gzip" and gz[3] == (folder / "page.txt.gz").read_bytes()


def _no_executor(*args, **kwargs):
    raise AssertionError("the executor was asked for")


@pytest.mark.parametrize("ours", ["ringlet", "ring-reads"])
def test_no_executor_is_used(folder, backend_name, ours, run):
    if not backend_name.startswith("io_uring"):
        pytest.skip("the thread backend does its I/O on threads by design (RINGLET_BACKEND=threads)")

    async def main():
        served = 0
        async with TestClient(TestServer(_app(folder))) as client:
            await client.get("/ringlet/page.txt")  # the server and client set up their own threads, if any
            executor_submit = concurrent.futures.ThreadPoolExecutor.submit
            concurrent.futures.ThreadPoolExecutor.submit = _no_executor  # run_in_executor's way in, any loop
            threads = set(threading.enumerate())  # a thread may end meanwhile: none may start
            try:
                for name in sorted(SIZES) + ["missing.txt", "fifo"]:
                    for method, headers in REQUESTS.values():
                        headers = {k: v.replace("{etag}", '"x"') for k, v in headers.items()}
                        status = (await _fetch(client, method, f"/{ours}/{name}", headers))[0]
                        assert status != 500
                        served += 1
            finally:
                concurrent.futures.ThreadPoolExecutor.submit = executor_submit
            assert set(threading.enumerate()) <= threads
        return served

    assert run(main()) == 6 * len(REQUESTS)
