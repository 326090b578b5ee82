"""ringlet.open() against built-in open() on random arguments, several of
them wrong at once: the same error (type, errno, message) or the same file
read, and the same files left on disk.  Built-in open() checks in an order
(the arguments' types, the file, the mode, FileIO's checks, the open, the
text layer's); where several arguments are wrong, the first check decides.

One difference is documented (docs/text-mode.md): a text mode's encoding,
newline and buffering=0 are checked before the file is touched, where
open() first opens it (creating or truncating it in mode "w").  So where
the open would also fail, ringlet gives the text error and open() the
open's; and ringlet leaves the files as they were.  Both are allowed here,
and only there.

RINGLET_FUZZ_EXAMPLES=N draws N new calls (a hunt); the suite runs fixed ones."""

import errno
import os
import random
import warnings

import pytest

EXAMPLES = int(os.environ.get("RINGLET_FUZZ_EXAMPLES", "1500"))
SEED = None if "RINGLET_FUZZ_EXAMPLES" in os.environ else 14

CONTENT = b"abc\r\ndef\n\xff"


def _outcome(exc):
    # an OSError's message holds the path (random names): its errno is compared
    if isinstance(exc, OSError) and exc.errno:
        return type(exc).__name__, exc.errno
    return type(exc).__name__, str(exc)


def _draw_call(rng):
    """(file kind, mode, keyword arguments): each argument often valid, sometimes not."""
    mode = "".join(rng.choice("rwxab+t") for _ in range(rng.randint(0, 3)))
    if rng.random() < 0.1:
        mode = rng.choice([None, 3, b"r", "rb\0", "r'", "U", "rU"])
    kw = {}
    for key, choices, odds in [
        ("buffering", [-1, 0, 1, 2, 8192, -2, 1.5, None, "1", 2**40], 0.3),
        ("encoding", ["utf-8", "latin-1", "no-such-codec", "", None, 3, "hex", "a\0", "locale"], 0.3),
        ("errors", ["strict", "ignore", "no-such-handler", None, 3, "", "\0"], 0.3),
        ("newline", [None, "", "\n", "\r", "\r\n", "x", 3, "\0"], 0.3),
        ("closefd", [False, True, 0, None, 1.5], 0.15),
        ("opener", ["opens", "gives_str", "gives_minus_1"], 0.1),
    ]:
        if rng.random() < odds:
            kw[key] = rng.choice(choices)
    kind = rng.choice(["exists", "exists", "missing", "empty_name", "directory", "nul", "bytes",
                       "fd", "fd", "negative_fd", "huge_fd", None, 3.0, 1j, "bytearray", "list"])
    return kind, mode, kw


class _Place:
    """A directory with one file in it, reset before each side's call."""

    def __init__(self, root):
        self.root = root
        self.exists = os.path.join(root, "exists")
        self.missing = os.path.join(root, "missing")

    def reset(self):
        with open(self.exists, "wb") as f:
            f.write(CONTENT)
        if os.path.exists(self.missing):
            os.unlink(self.missing)

    def state(self):
        with open(self.exists, "rb") as f:
            return f.read(), os.path.exists(self.missing)

    def argument(self, kind):
        """The file argument; a descriptor is opened anew for each side."""
        return {
            "exists": self.exists, "missing": self.missing, "empty_name": "", "directory": self.root,
            "nul": self.exists + "\0x", "bytes": os.fsencode(self.exists), "negative_fd": -3, "huge_fd": 2**40,
            "bytearray": bytearray(b"x"), "list": [],
        }.get(kind, kind) if kind != "fd" else os.open(self.exists, os.O_RDWR)


def _opener(name):
    return {
        "opens": lambda path, flags: os.open(path, flags, 0o666),
        "gives_str": lambda path, flags: "x",
        "gives_minus_1": lambda path, flags: -1,
    }[name]


def _with_opener(kw):
    return {k: _opener(v) if k == "opener" else v for k, v in kw.items()}


def _builtin(argument, mode, kw):
    with open(argument, mode, **kw) as f:
        return f.read() if f.readable() else None


async def _ringlet(ringlet, argument, mode, kw):
    async with ringlet.open(argument, mode, **kw) as f:
        return (await f.read()) if await f.readable() else None


def _checked_before_the_open(outcome):
    """An error of the text layer's checks (ringlet makes them before the open)."""
    name, detail = outcome
    return name == "LookupError" or (name == "ValueError" and (
        detail.startswith("illegal newline value") or detail == "can't have unbuffered text I/O"))


def test_open_takes_and_refuses_what_builtin_open_does(ringlet, run, tmp_path):
    place = _Place(str(tmp_path))
    rng = random.Random(SEED)
    differences, kinds_of_outcome, documented = [], set(), 0

    async def ours(argument, mode, kw):
        return await _ringlet(ringlet, argument, mode, kw)

    for _ in range(EXAMPLES):
        kind, mode, kw = _draw_call(rng)
        outcomes = []
        for side in ("builtin", "ringlet"):
            place.reset()
            argument = place.argument(kind)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # binary mode with buffering=1
                    if side == "builtin":
                        result = ("opened", _builtin(argument, mode, _with_opener(kw)))
                    else:
                        result = ("opened", run(ours(argument, mode, _with_opener(kw))))
            except Exception as exc:  # noqa: BLE001 - compared with the other side's
                result = _outcome(exc)
            finally:
                if kind == "fd":  # closed by the file unless closefd was false
                    try:
                        os.close(argument)
                    except OSError as exc:
                        assert exc.errno == errno.EBADF
            outcomes.append((result, place.state()))
        (expected, expected_files), (got, got_files) = outcomes
        kinds_of_outcome |= {expected[0], got[0]}
        if _checked_before_the_open(got) and expected[0] != "opened":
            # The documented difference: refused before the open, nothing touched.
            assert got_files == (CONTENT, False), "a call refused before the open touched a file"
            documented += got != expected
            continue
        if (got, got_files) != (expected, expected_files):
            differences.append((kind, mode, kw, got, expected, got_files, expected_files))

    assert differences == []
    # The draw reached files opened and each stage's errors (on either side).
    assert {"opened", "TypeError", "ValueError", "LookupError", "FileNotFoundError",
            "IsADirectoryError"} <= kinds_of_outcome
    assert documented < EXAMPLES // 20
