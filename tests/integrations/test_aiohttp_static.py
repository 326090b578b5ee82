"""ringlet.integrations.aiohttp.static (StaticResource) against aiohttp's
own web.static, request by request, with aiohttp's test server and client:
the same status, headers and body, on a fixed tree and on random trees of
symbolic links, in each configuration (show_index, follow_symlinks); and
no executor for the files the kernel finds, nor for a plain 404."""

import concurrent.futures
import gzip
import os
import random
import threading

import pytest

pytest.importorskip("aiohttp", reason="the aiohttp integration needs aiohttp (ringlet[aiohttp])")

from aiohttp import web  # noqa: E402
from aiohttp.test_utils import TestClient, TestServer  # noqa: E402

from conftest import random_link_tree  # noqa: E402
from ringlet.integrations import aiohttp as ringlet_aiohttp  # noqa: E402

CONFIGS = {
    "plain": {},
    "index": {"show_index": True},
    "follow": {"follow_symlinks": True},
    "both": {"show_index": True, "follow_symlinks": True, "chunk_size": 1000},
}
COMPARED = ("Content-Length", "Content-Type", "ETag", "Last-Modified", "Content-Range", "Content-Encoding")

# Paths under the prefix, for the fixed tree below.
PATHS = ["page.txt", "big.bin", "sub", "sub/", "sub/inner.txt", "missing", "missing/x", "page.txt/x",
         "link_in", "link_out", "link_dir", "link_dangling", "link_loop", "link_slash", "link_through_missing",
         "link_dir/inner.txt", "fifo", "", "%2e%2e/outside/secret", "sub/%2e%2e/page.txt", "page%00.txt",
         "sub%2f..%2fpage.txt", "a" * 300, "/".join(["sub"] * 2000)]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    base = tmp_path_factory.mktemp("aiohttp-static")
    static, outside = base / "static", base / "outside"
    (static / "sub").mkdir(parents=True)
    outside.mkdir()
    (static / "page.txt").write_text("page")
    (static / "page.txt.gz").write_bytes(gzip.compress(b"page"))
    (static / "big.bin").write_bytes(bytes(i % 251 for i in range(300_001)))
    (static / "sub" / "inner.txt").write_text("inner")
    (outside / "secret").write_text("secret")
    os.mkfifo(static / "fifo")
    for name, target in [("link_in", "page.txt"), ("link_out", "../outside/secret"), ("link_dir", "sub"),
                         ("link_dangling", "missing"), ("link_loop", "link_loop"), ("link_slash", "page.txt/"),
                         ("link_through_missing", "missing/../page.txt")]:
        (static / name).symlink_to(target)
    return base


def _app(directory, config):
    app = web.Application()
    app.add_routes([web.static("/stock", directory, **config),  # prefixes of one length: listings alike
                    ringlet_aiohttp.static("/rglet", directory, **config)])
    return app


async def _fetch(client, method, url, headers=None):
    async with client.request(method, url, headers=headers or {}, auto_decompress=False) as response:
        body = await response.read()
        return response.status, {name: response.headers.get(name) for name in COMPARED}, body.replace(b"/rglet", b"/stock")


async def _compare(app, requests):
    """(differences, statuses) of the requests [(method, path, headers)] sent to both routes."""
    differences, statuses = [], set()
    async with TestClient(TestServer(app)) as client:
        for method, path, headers in requests:
            stock = await _fetch(client, method, f"/stock/{path}", headers)
            ours = await _fetch(client, method, f"/rglet/{path}", headers)
            statuses.add(stock[0])
            if ours != stock:
                differences.append((method, path, headers, ours[:2], stock[:2]))
    return differences, statuses


@pytest.mark.parametrize("config", CONFIGS)
def test_same_responses_as_stock(root, config, run):
    requests = [(method, path, headers) for path in PATHS for method in ("GET", "HEAD")
                for headers in ({}, {"Range": "bytes=1-2", "Accept-Encoding": "gzip"})]
    differences, statuses = run(_compare(_app(root / "static", CONFIGS[config]), requests))
    assert differences == []
    assert {200, 206, 403, 404} <= statuses


def test_a_listing_and_the_files_around_it(root, run):
    """show_index lists a folder (the stock code, in the executor, as there):
    the same page, its links under the route's own prefix."""
    async def main():
        async with TestClient(TestServer(_app(root / "static", {"show_index": True}))) as client:
            stock = await client.get("/stock/sub")
            ours = await client.get("/rglet/sub")
            return stock.status, await stock.text(), ours.status, await ours.text()

    stock_status, stock_page, our_status, our_page = run(main())
    assert (our_status, stock_status) == (200, 200)
    assert our_page == stock_page.replace("/stock/", "/rglet/")
    assert '<a href="/rglet/sub/inner.txt">inner.txt</a>' in our_page


# Names for random trees and requests: files, folders, links, and the
# spellings a link's target may hold ("", ".", "..", a trailing "/").
_NAMES = ["page.txt", "sub", "..", ".", "", "missing", "l0", "l1", "l2", "outside", "inner.txt"]


def _random_tree(base, rng):
    """static/ and outside/ under base, with three links of random targets."""
    random_link_tree(base, rng, _NAMES, {"static/sub/inner.txt": "inner", "outside/page.txt": "outside"})


@pytest.mark.parametrize("seed", range(6))
def test_same_responses_as_stock_on_random_links(tmp_path, seed, run):
    """Random trees of symbolic links and random requests, each config: the
    kernel's resolution and os.path.realpath's differ on targets such as
    "page.txt/" or "missing/../page.txt", where the stock lookup decides."""
    rng = random.Random(seed)
    differences, compared = [], 0
    for tree in range(4):
        _random_tree(tmp_path / f"t{tree}", rng)
        for config in CONFIGS.values():
            requests = [("GET", "/".join(rng.choice(_NAMES) for _ in range(rng.randint(1, 3))), {})
                        for _ in range(8)]
            found, _ = run(_compare(_app(tmp_path / f"t{tree}" / "static", config), requests))
            differences += found
            compared += len(requests)
    assert differences == []
    assert compared == 4 * len(CONFIGS) * 8


def _no_executor(*args, **kwargs):
    raise AssertionError("the executor was asked for")


def test_no_executor_for_files_found_or_plainly_missing(root, backend_name, run):
    if not backend_name.startswith("io_uring"):
        pytest.skip("the thread backend does its I/O on threads by design (RINGLET_BACKEND=threads)")

    async def main():
        statuses = []
        async with TestClient(TestServer(_app(root / "static", {}))) as client:
            await client.get("/rglet/page.txt")  # the server and client set up their own threads, if any
            executor_submit = concurrent.futures.ThreadPoolExecutor.submit
            concurrent.futures.ThreadPoolExecutor.submit = _no_executor  # run_in_executor's way in, any loop
            threads = set(threading.enumerate())
            try:
                for path in ["page.txt", "big.bin", "sub/inner.txt", "link_in", "link_dir/inner.txt", "sub",
                             "missing", "missing/x", "sub/missing", "link_out", "fifo"]:
                    statuses.append((await _fetch(client, "GET", f"/rglet/{path}"))[0])
            finally:
                concurrent.futures.ThreadPoolExecutor.submit = executor_submit
            assert set(threading.enumerate()) <= threads
        return statuses

    assert run(main()) == [200, 200, 200, 200, 200, 403, 404, 404, 404, 404, 403]


def test_add_static_registers_as_the_router_does(root):
    """add_static(router, ...) as router.add_static(...): one trailing "/" of
    the prefix dropped, the resource registered (and named) the same."""
    stock_app, our_app = web.Application(), web.Application()
    stock = stock_app.router.add_static("/files/", root / "static", name="files", show_index=True)
    ours = ringlet_aiohttp.add_static(our_app.router, "/files/", root / "static", name="files", show_index=True)
    assert isinstance(ours, ringlet_aiohttp.StaticResource)
    assert ours.get_info().keys() == stock.get_info().keys()
    assert (ours.canonical, ours.name, ours.get_info()["directory"]) == (stock.canonical, stock.name,
                                                                         stock.get_info()["directory"])
    assert our_app.router["files"] is ours
    assert str(ours.url_for(filename="page.txt")) == str(stock.url_for(filename="page.txt")) == "/files/page.txt"
