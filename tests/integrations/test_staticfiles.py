"""ringlet.integrations.starlette.StaticFiles against the stock
starlette.staticfiles.StaticFiles: the same ASGI requests, sent straight to
each app (so that paths a client would clean up, "..", NUL, "//", reach
them as they are), must give the same status, headers and body, or the same
exception."""

import os
import random
import sys
import threading

import pytest

pytest.importorskip("starlette", reason="the Starlette integration needs starlette (ringlet[starlette])")

import anyio.to_thread  # noqa: E402
from starlette.exceptions import HTTPException  # noqa: E402
from starlette.staticfiles import StaticFiles as StockStaticFiles  # noqa: E402

from conftest import asgi_request, cancelled_request, random_link_tree, refuse_threads  # noqa: E402
from ringlet.integrations import starlette as ringlet_starlette  # noqa: E402
from ringlet.integrations.starlette import StaticFiles as RingletStaticFiles  # noqa: E402

# Each app's arguments, by name (the folder's "static" directory, or the link to it).
CONFIGS = {
    "plain": lambda root: {"directory": root / "static"},
    "html": lambda root: {"directory": root / "static", "html": True},
    "follow_symlink": lambda root: {"directory": root / "static", "follow_symlink": True},
    "linked_directory": lambda root: {"directory": root / "current", "html": True},
    "with_package": lambda root: {"directory": root / "static", "packages": ["ringlet_test_assets"]},
}

PATHS = [
    "/page.txt", "/mib.bin", "/empty.bin", "/style.css", "/404.html", "/sub", "/sub/", "/sub/index.html",
    "/noindex", "/noindex/", "/", "/missing.txt", "/page.txt/inside", "/packaged.txt",
    # symlinks: inside (relative, absolute, named otherwise: the type comes from the real name),
    # out of the folder, dangling, in a loop
    "/link_inside.txt", "/link_absolute.txt", "/link_named.css", "/link_outside.txt",
    "/link_outside_dir/secret.txt", "/link_outside_dir", "/dangling", "/loop",
    # targets the stock lookup reads as text (os.path.realpath) where the kernel finds nothing
    "/link_slash", "/link_through_missing",
    "/fifo",
    # leaving the folder by name
    "/../outside/secret.txt", "/../static/page.txt", "/..", "//etc/passwd", "/sub/../../outside/secret.txt",
    # names the kernel refuses
    "/a\x00b", "/" + "n" * 300, "/" + "/".join(["d"] * 2100),
]

# Paths whose lookup the stock class makes, in its thread: see test_no_thread_is_used.
STOCK_DECIDES = {"/loop", "/dangling", "/link_slash", "/link_through_missing"}

# (method, request headers); "{etag}" and "{lm}" are filled from page.txt's own.
REQUESTS = {
    "get": ("GET", {}),
    "head": ("HEAD", {}),
    "post": ("POST", {}),
    "range": ("GET", {"range": "bytes=5-99"}),
    "if_none_match": ("GET", {"if-none-match": "{etag}"}),
    "if_none_match_other": ("GET", {"if-none-match": '"other", W/{etag}'}),
    "if_modified_since": ("GET", {"if-modified-since": "{lm}"}),
}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    static, outside = root / "static", root / "outside"
    static.mkdir()
    outside.mkdir()
    for name, size in (("page.txt", 4096), ("mib.bin", 1 << 20), ("empty.bin", 0), ("style.css", 300)):
        (static / name).write_bytes(bytes((i * 7 + 3) % 251 for i in range(size)))
    (static / "404.html").write_text("<p>not here</p>")
    (static / "sub").mkdir()
    (static / "sub" / "index.html").write_text("<p>sub</p>")
    (static / "noindex").mkdir()
    (outside / "secret.txt").write_text("secret")
    (static / "link_inside.txt").symlink_to("page.txt")
    (static / "link_absolute.txt").symlink_to(static / "style.css")
    (static / "link_named.css").symlink_to("page.txt")
    (static / "link_outside.txt").symlink_to("../outside/secret.txt")
    (static / "link_outside_dir").symlink_to(outside)
    (static / "dangling").symlink_to("nowhere")
    (static / "loop").symlink_to("loop")
    (static / "link_slash").symlink_to("page.txt/")
    (static / "link_through_missing").symlink_to("missing/../style.css")
    os.mkfifo(static / "fifo")
    (root / "current").symlink_to("static")
    package = root / "packages" / "ringlet_test_assets"
    (package / "statics").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "statics" / "packaged.txt").write_text("from the package")
    (package / "statics" / "page.txt").write_text("shadowed by the directory's")
    sys.path.insert(0, str(root / "packages"))
    yield root
    sys.path.remove(str(root / "packages"))
    sys.modules.pop("ringlet_test_assets", None)


async def _request(app, method, path, headers):
    """(status, sorted headers, body) of one request, or the exception's type, status and text."""
    try:
        messages = await asgi_request(app, method, path, headers)
    except Exception as exc:  # noqa: BLE001 - compared with the stock app's
        return type(exc), getattr(exc, "status_code", None), str(exc)
    assert messages[0]["type"] == "http.response.start"
    return messages[0]["status"], sorted(messages[0]["headers"]), b"".join(m.get("body", b"") for m in messages[1:])


def _fill(headers, etag, last_modified):
    return {k: v.replace("{etag}", etag).replace("{lm}", last_modified) for k, v in headers.items()}


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_same_responses_as_stock(root, config, run):
    stock, ours = (cls(**CONFIGS[config](root)) for cls in (StockStaticFiles, RingletStaticFiles))

    async def main():
        probe = await _request(stock, "HEAD", "/page.txt", {})
        headers = dict(probe[1])
        etag, last_modified = headers[b"etag"].decode(), headers[b"last-modified"].decode()
        differences, statuses = [], set()
        for path in PATHS:
            for kind, (method, request_headers) in sorted(REQUESTS.items()):
                request_headers = _fill(request_headers, etag, last_modified)
                expected = await _request(stock, method, path, request_headers)
                got = await _request(ours, method, path, request_headers)
                statuses.add(expected[0] if isinstance(expected[0], int) else expected[1])
                if got != expected:
                    differences.append((path, kind, got, expected))
        return differences, statuses

    differences, statuses = run(main())
    assert differences == []
    # The comparison covered files, redirects or not, conditional requests and refusals.
    assert {200, 206, 304, 404, 405} <= statuses
    if CONFIGS[config](root).get("html"):
        assert 307 in statuses


def test_the_checks_see_what_they_test(root, run):
    """What the comparison above rests on, seen directly on ringlet's app:
    a symlink out of the folder is refused unless follow_symlink, one
    inside is served under its real name's type, the package is searched
    after the directory."""
    plain = RingletStaticFiles(directory=root / "static", packages=["ringlet_test_assets"])
    following = RingletStaticFiles(directory=root / "static", follow_symlink=True)

    async def main():
        return [await _request(app, "GET", path, {}) for app, path in (
            (plain, "/link_outside.txt"), (following, "/link_outside.txt"), (plain, "/link_named.css"),
            (plain, "/packaged.txt"), (plain, "/page.txt"))]

    outside, followed, named, packaged, page = run(main())
    assert outside[:2] == (HTTPException, 404)
    assert (followed[0], followed[2]) == (200, b"secret")
    assert dict(named[1])[b"content-type"].startswith(b"text/plain")
    assert (packaged[0], packaged[2]) == (200, b"from the package")
    assert (page[0], page[2]) == (200, (root / "static" / "page.txt").read_bytes())


def test_no_thread_is_used(root, monkeypatch, backend_name, run):
    """Every request of the comparison, served by ringlet's app with
    anyio's thread pool and the executors made to fail: none starts a
    thread, but where the kernel finds nothing through a symbolic link (the
    stock lookup decides: see _symlink_on_the_way) or finds a loop (the stock
    lookup raises its error)."""
    if not backend_name.startswith("io_uring"):
        pytest.skip("the thread backend does its I/O on threads by design (RINGLET_BACKEND=threads)")
    refuse_threads(monkeypatch)
    apps = [RingletStaticFiles(**config(root)) for config in CONFIGS.values()]

    async def main():
        threads = set(threading.enumerate())
        served = 0
        for app in apps:
            for path in PATHS:
                if path in STOCK_DECIDES:
                    continue
                result = await _request(app, "GET", path, {})
                assert result[0] is not AssertionError, (path, result)
                served += 1
        assert set(threading.enumerate()) <= threads
        return served

    assert run(main()) == len(CONFIGS) * (len(PATHS) - len(STOCK_DECIDES))


def test_without_proc_the_stock_lookup_runs(root, monkeypatch, run):
    """Where /proc is not mounted, real paths cannot be asked of the
    kernel: the stock lookup runs (in its thread), with the same answers."""
    monkeypatch.setattr(ringlet_starlette, "PROC_FD_LINKS", False)
    calls = []
    real_run_sync = anyio.to_thread.run_sync

    async def counting_run_sync(function, *args, **kwargs):
        calls.append(function.__name__)
        return await real_run_sync(function, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting_run_sync)
    ours = RingletStaticFiles(directory=root / "static")
    stock = StockStaticFiles(directory=root / "static")

    async def main():
        return [(await _request(ours, "GET", p, {}), await _request(stock, "GET", p, {}))
                for p in ("/page.txt", "/link_outside.txt", "/missing.txt")]

    for got, expected in run(main()):
        assert got == expected
    assert calls.count("lookup_path") == 6  # three each


@pytest.mark.parametrize("cancel_at", [1, 2, 3])
def test_a_cancelled_request_leaves_no_descriptor(root, cancel_at, run):
    """A request through a linked directory (two lookups) cancelled at its
    cancel_at-th message: no descriptor is left open."""
    app = RingletStaticFiles(directory=root / "current")

    async def main():
        import ringlet
        ringlet.get_engine()
        await asgi_request(app, "HEAD", "/page.txt")  # the config check, done once per app
        before = len(os.listdir("/proc/self/fd"))
        sent = [await cancelled_request(app, "/mib.bin", cancel_at) for _ in range(20)]
        assert len(os.listdir("/proc/self/fd")) == before
        return sent

    assert run(main()) == [cancel_at] * 20


def test_a_subclass_lookup_path_is_used(root, run):
    """A subclass that overrides lookup_path (the stock class's hook) gets it
    called, as with the stock class."""
    class Remapped(RingletStaticFiles):
        def lookup_path(self, path):
            return super().lookup_path("style.css" if path == "alias.css" else path)

    app = Remapped(directory=root / "static")
    got = run(_request(app, "GET", "/alias.css", {}))
    assert (got[0], got[2]) == (200, (root / "static" / "style.css").read_bytes())


# Names for random trees and requests: files, directories, links, and the
# spellings a link's target may hold ("", ".", "..", a trailing "/").
_NAMES = ["page.txt", "sub", "..", ".", "", "missing", "l0", "l1", "l2", "outside", "index.html", "404.html"]


def _random_tree(base, rng):
    """static/ and outside/ under base, with three links of random targets;
    returns the links."""
    files = {"static/sub/index.html": "sub's index", "outside/secret": "secret"}
    if rng.random() < 0.5:
        files["static/404.html"] = "not here"
    return random_link_tree(base, rng, _NAMES, files)


@pytest.mark.parametrize("seed", range(12))
def test_same_responses_as_stock_on_random_links(tmp_path, seed, run):
    """Random trees of symbolic links and random requests, every config of
    html and follow_symlink: ringlet's app answers as the stock one.  (The
    kernel's resolution and os.path.realpath's differ on targets such as
    "page.txt/" or "missing/../page.txt": a hunt of this kind found them.)"""
    rng = random.Random(seed)

    async def main():
        differences, compared = [], 0
        for tree in range(5):
            links = _random_tree(tmp_path / f"t{tree}", rng)
            for html in (False, True):
                for follow in (False, True):
                    config = {"directory": tmp_path / f"t{tree}" / "static", "html": html, "follow_symlink": follow}
                    stock, ours = StockStaticFiles(**config), RingletStaticFiles(**config)
                    for _ in range(8):
                        path = "/" + "/".join(rng.choice(_NAMES) for _ in range(rng.randint(1, 3)))
                        expected, got = await _request(stock, "GET", path, {}), await _request(ours, "GET", path, {})
                        compared += 1
                        if got != expected:
                            differences.append((links, html, follow, path, got, expected))
        return differences, compared

    differences, compared = run(main())
    assert differences == []
    assert compared == 5 * 4 * 8
