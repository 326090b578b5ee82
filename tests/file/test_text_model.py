"""Model-based tests of text files: random sequences of operations on a
ringlet text file, compared step by step with the same operations on a second
file opened by built-in open() in the same text mode (io.TextIOWrapper on a
buffered file), with the same encoding, errors and newline.

What AsyncTextFile documents as different is modelled, not skipped: a write
after reads writes at tell() (the reference seeks there first), a read after
writes reads after them (the reference, whose C code may not, seeks first),
a byte order mark is written at byte 0 and only there, and a cookie is the
byte offset of the next character with the decoder's flags above bit 64
(compared with the built-in's where that is an offset alone, else by where
it leads).  Where a read raises UnicodeDecodeError on one side only, the file
must hold bytes that do not decode (compare_read): where each side raises
depends on how much it decodes ahead.

The bytes of the two files are compared whenever both are flushed or closed.
Each test runs on both backends.
"""

import asyncio
import itertools
import os

import pytest
from test_model import (  # skips this module too without hypothesis
    MODEL_SETTINGS, PairedFiles, cancelled_after, first_lines, is_open, outcome)

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, precondition, rule, run_state_machine_as_test

import ringlet
from conftest import settled

MODES = ["r", "r+", "w", "w+", "a", "a+", "x+"]
ENCODINGS = ["utf-8", "latin-1", "utf-16", "utf-8-sig", "utf-32"]
NEWLINES = [None, "", "\n", "\r", "\r\n"]

# Text with every kind of line ending, characters of one to four UTF-8 bytes
# (the last two not in latin-1: a write of them fails there, on both sides),
# and texts longer than a read-ahead (64 KiB) whose endings straddle refills.
TEXT = st.one_of(
    st.text(alphabet="ab \n\r\té€𝄞", max_size=300),
    st.lists(st.sampled_from(["\n", "\r\n", "\r", "line", "x" * 100, "é", "€"]), max_size=40).map("".join),
    st.integers(0, 3).map(lambda k: ("ab\r\n" if k % 2 else "é\n") * (9000 * k)),
)
READ_SIZES = st.one_of(st.integers(0, 300), st.sampled_from([-1, None, 8191, 8192, 8193, 70_000]))
LINE_SIZES = st.one_of(st.integers(0, 120), st.sampled_from([-1, None]))
HINTS = st.one_of(st.integers(0, 300), st.sampled_from([-1, None, 8192, 65_536]))


def plain_offset(outcome):
    """Whether the built-in's cookie is a byte offset alone, or an error:
    then ringlet's must be the same.  Other cookies of the built-in carry
    its decoder's state (UTF-16's, a "\\r" kept back), the characters to
    skip after a start it chose, or end of file reached: ringlet's stay the
    offset of the next character, so where the two lead is compared."""
    return outcome[0] != "ok" or outcome[1] < 1 << 64


class TextModel(PairedFiles):
    """ringlet against built-in open()."""

    suffix = ".txt"

    def __init__(self):
        super().__init__()
        self.cookies = []  # (ringlet's, built-in's) taken at the same point
        self.read_since_seek = False  # the next write must place the built-in file (ref_at_tell)
        self.ref_wrote = False  # the next read must flush the built-in file (before_read)

    def compare(self, what, got, want):
        assert got == want, (f"{what} (mode {self.mode!r}, {self.options}): ringlet {got!r}, "
                             f"built-in {want!r}")
        return got

    # -- opening and closing ----------------------------------------------------

    @initialize(content=TEXT, encoding=st.sampled_from(ENCODINGS), newline=st.sampled_from(NEWLINES),
                errors=st.sampled_from(["strict", "replace"]), mode=st.sampled_from(MODES))
    def start(self, content, encoding, newline, errors, mode):
        """Both files start with content in encoding ("?" for what it cannot
        encode), and open in the same mode with the same options."""
        data = content.encode(encoding, "replace")
        for path in (self.path, self.ref_path):
            with open(path, "wb") as f:
                f.write(data)
        self.options = dict(encoding=encoding, errors=errors, newline=newline)
        self.open_files(mode)

    @rule(mode=st.sampled_from(MODES))
    def open_files(self, mode):
        self.close_files()
        got = self.ring(lambda: ringlet.open(self.path, mode, **self.options))
        want = outcome(lambda: open(self.ref_path, mode, **self.options))
        self.compare(f"open({mode!r})", got[:1] if got[0] == "ok" else got, want[:1] if want[0] == "ok" else want)
        if got[0] == "ok":
            self.f, self.ref, self.mode = got[1], want[1], mode
            self.cookies = []
            self.read_since_seek = self.ref_wrote = False

    @precondition(is_open)
    @rule()
    def close_files(self):
        if self.f is not None:
            self.compare("close", self.ring(lambda: self.f.close()), outcome(self.ref.close))
            self.f = self.ref = self.mode = None
            self.same_bytes()

    @precondition(lambda self: self.f is None)
    @rule()
    def unlink_files(self):
        for path in (self.path, self.ref_path):
            if os.path.exists(path):
                os.unlink(path)

    # -- reading --------------------------------------------------------------------

    def compare_read(self, what, got, want):
        """As compare, but a UnicodeDecodeError, on one side or both, is right
        where the file holds bytes that do not decode (a write over part of a
        character made them): where each side raises, and where it leaves
        its position, depends on how much it decodes ahead.  Both are then
        reopened to read with errors="replace"."""
        if UnicodeDecodeError in (got[1], want[1]):
            assert not self.decodes(), (what, got, want)
            mode = {"w+": "r+", "x+": "r+"}.get(self.mode, self.mode)
            self.options["errors"] = "replace"
            self.open_files(mode)
            assert self.f is not None
            return
        self.compare(what, got, want)

    def decodes(self):
        """Whether the bytes of ringlet's file (as yet written) decode."""
        self.run(self.f.flush())
        with open(self.path, "rb") as raw:
            data = raw.read()
        try:
            data.decode(self.options["encoding"])
        except UnicodeDecodeError:
            return False
        return True

    def before_read(self):
        """A read after writes reads after what was written, decoded as the
        middle of the file, on ringlet's side.  CPython's C TextIOWrapper
        reads from its buffered file without writing what it holds first,
        which then lands at the end (python/cpython#115059, #117095), and its
        write resets the decoder to a file's start (UTF-16 then wants a BOM
        there): the built-in is sent to tell() first."""
        if self.ref_wrote and not self.ref.closed:
            self.ref.seek(self.ref.tell())
        self.ref_wrote = False
        self.read_since_seek = True

    @precondition(is_open)
    @rule(size=READ_SIZES)
    def read(self, size):
        self.before_read()
        self.compare_read(f"read({size})", self.ring(lambda: self.f.read(size)), outcome(self.ref.read, size))

    @precondition(is_open)
    @rule(size=LINE_SIZES)
    def readline(self, size):
        self.before_read()
        self.compare_read(f"readline({size})", self.ring(lambda: self.f.readline(size)),
                          outcome(self.ref.readline, size))

    @precondition(is_open)
    @rule(hint=HINTS)
    def readlines(self, hint):
        self.before_read()
        self.compare_read(f"readlines({hint})", self.ring(lambda: self.f.readlines(hint)),
                          outcome(self.ref_readlines, hint))

    def ref_readlines(self, hint):
        """The built-in's readlines(hint), as io.IOBase.readlines reads, with
        readline(): its own goes through next(), which turns tell() off
        unless it reaches the end (it raised OSError after readlines(1))."""
        lines, total = [], 0
        while not (hint is not None and 0 < hint < total):
            line = self.ref.readline()
            if not line:
                break
            lines.append(line)
            total += len(line)
        return lines

    @precondition(is_open)
    @rule(count=st.integers(1, 30))
    def iterate(self, count):
        """count steps of `async for`, against the built-in's readline() (its
        next() would turn tell() off)."""
        self.before_read()
        self.compare_read(f"{count} lines of async for", self.ring(lambda: first_lines(self.f, count)),
                          outcome(lambda: list(itertools.islice(iter(self.ref.readline, ""), count))))

    @precondition(is_open)
    @rule(call=st.sampled_from(["read", "readline", "readlines"]), turns=st.integers(0, 4), size=READ_SIZES)
    def cancelled(self, call, turns, size):
        """A read cancelled after `turns` turns of the loop: done before the
        cancel, as the built-in's; else it did not happen (what the next
        reads give is compared with the built-in's, which made none)."""
        self.before_read()
        mine = {"read": self.f.read, "readline": self.f.readline, "readlines": self.f.readlines}[call]
        size = -1 if call == "readline" and size is None else size

        got = self.ring(lambda: cancelled_after(turns, lambda: mine(size)))
        self.run(settled())
        if got[1] is not asyncio.CancelledError:
            theirs = {"read": self.ref.read, "readline": self.ref.readline, "readlines": self.ref_readlines}[call]
            self.compare_read(f"{call}({size}) not cancelled in time", got, outcome(theirs, size))

    @precondition(is_open)
    @rule(call=st.sampled_from(["flush", "seek", "tell"]), turns=st.integers(0, 4))
    def cancelled_flush(self, call, turns):
        """flush(), seek(0) or tell() cancelled after `turns` turns of the
        loop, maybe while it writes what is buffered: what it did not write
        stays buffered (the next flush compares the bytes); a seek cancelled
        there did not move, one done before the cancel is made on the
        built-in; a tell moves nothing either way."""
        mine = {"flush": self.f.flush, "seek": lambda: self.f.seek(0), "tell": self.f.tell}[call]
        got = self.ring(lambda: cancelled_after(turns, mine))
        self.run(settled())
        if call == "seek" and got[0] == "ok":
            self.compare("seek(0) not cancelled in time", got, self.ref_seek(0))
        elif call == "tell" and got[0] == "ok":
            assert isinstance(got[1], int) and got[1] >= 0, got
        else:
            assert got in (("ok", None), ("raised", asyncio.CancelledError, None)), got

    # -- writing --------------------------------------------------------------------

    @precondition(is_open)
    @rule(text=TEXT, turns=st.integers(0, 4))
    def cancelled_write(self, text, turns):
        """A write cancelled after `turns` turns of the loop: its text is
        written whole or not at all (cancelled while it wrote what was
        buffered, it stays buffered: the flush that follows writes it)."""
        self.ref_at_tell()
        before = self.run(self.f.tell())

        got = self.ring(lambda: cancelled_after(turns, lambda: self.f.write(text)))
        self.run(settled())
        if got[0] == "raised" and got[1] is not asyncio.CancelledError:  # a file not open for writing, say
            self.compare("write", got, outcome(self.ref.write, text))
            return
        if got[0] == "ok" or self.run(self.f.tell()) != before:  # it wrote (tell() writes what is buffered)
            self.ref.write(text)
            self.ref_wrote = True
        self.flush()  # the bytes are compared
        self.cookies = []


    def ref_at_tell(self):
        """After reads, ringlet writes at its tell() (documented).  The
        built-in writes after its read-ahead unless it seeks first, so it is
        sent to ringlet's cookie (the same format).  Not its own: after a
        "\\r" with newline None or "" its cookie is past the "\\r" (kept by its
        decoder, with a flag), ringlet's before it, where the next read starts."""
        if self.read_since_seek and not self.ref.closed:
            moved = self.ref_seek(self.run(self.f.tell()))
            assert moved[0] == "ok", moved
        self.read_since_seek = False

    @precondition(is_open)
    @rule(text=TEXT)
    def write(self, text):
        want = outcome(lambda: (self.ref_at_tell(), self.ref.write(text))[1])
        self.compare(f"write({len(text)} characters)", self.ring(lambda: self.f.write(text)), want)
        self.ref_wrote = True
        self.cookies = []  # a cookie's decoder state may not hold over new bytes

    @precondition(is_open)
    @rule(lines=st.lists(TEXT, max_size=5))
    def writelines(self, lines):
        want = outcome(lambda: (self.ref_at_tell(), self.ref.writelines(lines))[1])
        self.compare("writelines", self.ring(lambda: self.f.writelines(lines)), want)
        self.ref_wrote = True
        self.cookies = []

    @precondition(is_open)
    @rule(which=st.one_of(st.none(), st.integers(0, 100)))
    def truncate(self, which):
        """At tell() (None), at 0 or at a cookie's offset: a character's start
        (elsewhere the text would not decode, on either side, at a place
        that depends on how much each decodes ahead).  Then both go back to
        the start: the built-in keeps what it decoded before the truncation
        (its own read-ahead), which ringlet need not."""
        offsets = [0] + [mine & ((1 << 64) - 1) for mine, _ in self.cookies]
        size = None if which is None else offsets[which % len(offsets)]

        def ref_truncate():
            if size is None:
                self.ref_at_tell()
            return self.ref.truncate(size)

        self.compare(f"truncate({size})", self.ring(lambda: self.f.truncate(size)), outcome(ref_truncate))
        self.cookies = []
        self.seek((0, os.SEEK_SET))

    @precondition(is_open)
    @rule()
    def flush(self):
        self.compare("flush", self.ring(lambda: self.f.flush()), outcome(self.ref.flush))
        self.same_bytes()

    # -- positions ------------------------------------------------------------------

    @precondition(is_open)
    @rule()
    def tell(self):
        got = self.ring(lambda: self.f.tell())
        want = outcome(self.ref.tell)
        self.compare_position("tell", got, want)
        if got[0] == "ok":
            self.cookies.append((got[1], want[1]))

    @precondition(lambda self: self.f is not None and self.cookies)
    @rule(which=st.integers(0, 100))
    def seek_to_cookie(self, which):
        mine, theirs = self.cookies[which % len(self.cookies)]
        got = self.ring(lambda: self.f.seek(mine))
        want = self.ref_seek(theirs)
        if got[0] == "ok" and want[0] == "ok":
            assert (got[1], want[1]) == (mine, theirs)
        else:
            self.compare("seek(cookie)", got, want)

    def ref_seek(self, *args):
        """The built-in's seek(*args), as an outcome.  At byte 0 ringlet writes
        a byte order mark next (documented); the built-in's seek to a cookie
        that is not 0 there (UTF-16's before its BOM was read) sets its
        encoder to write none: a seek to 0 resets it."""
        want = outcome(self.ref.seek, *args)
        if want[0] == "ok":
            self.read_since_seek = False
            if self.ref.buffer.tell() == 0:
                self.ref.seek(0)
        return want

    @precondition(is_open)
    @rule(offset_whence=st.sampled_from([(0, os.SEEK_SET), (0, os.SEEK_CUR), (0, os.SEEK_END), (-1, os.SEEK_SET),
                                         (1, os.SEEK_CUR), (-1, os.SEEK_END), (0, 3)]))
    def seek(self, offset_whence):
        """0 or the errors: another offset is no cookie."""
        offset, whence = offset_whence
        got = self.ring(lambda: self.f.seek(offset, whence))
        want = self.ref_seek(offset, whence)
        self.compare_position(f"seek({offset}, {whence})", got, want)

    def compare_position(self, what, got, want):
        """A cookie, from tell() or seek().  Where the two lead is compared
        (seek_to_cookie) when the built-in's holds more than an offset, or when
        one side has read the file's mark and the other not yet (a readline(0)
        of the built-in decodes ahead; a read cancelled may have read it)."""
        mark = len("".encode(self.options["encoding"]))  # a byte order mark's length, or 0
        if not plain_offset(want) or mark and got[0] == "ok" and {got[1], want[1]} == {0, mark}:
            assert got[0] == "ok" and got[1] >= 0, got
        else:
            self.compare(what, got, want)

    # -- invariants -----------------------------------------------------------------

    def same_bytes(self):
        """Only when both sides have flushed: each buffers writes its own way."""
        with open(self.path, "rb") as a, open(self.ref_path, "rb") as b:
            mine, theirs = a.read(), b.read()
        if mine != theirs:
            at = next((i for i, (x, y) in enumerate(zip(mine, theirs)) if x != y), min(len(mine), len(theirs)))
            raise AssertionError(f"the files differ (mode {self.mode!r}, {self.options}): ringlet {len(mine)} "
                                 f"bytes, built-in {len(theirs)}; first difference at byte {at}: "
                                 f"{mine[at:at + 20]!r} against {theirs[at:at + 20]!r}")

    @invariant()
    def nothing_in_flight(self):
        async def in_flight():
            return ringlet.get_engine().stats()["in_flight"]

        assert self.run(in_flight()) == 0


@pytest.mark.timeout(600)  # only a failure's shrinking takes long, and its report must not be cut off
def test_text_files_behave_as_built_in_ones():
    run_state_machine_as_test(TextModel, settings=settings(MODEL_SETTINGS, max_examples=300, stateful_step_count=40))


# --------------------------------------------------------------------------
# the model's own sanity: it must be able to see a difference
# --------------------------------------------------------------------------


def _machine(content, mode, **options):
    machine = TextModel()
    machine.start(content, options.get("encoding", "utf-8"), options.get("newline"), "strict", mode)
    return machine


def test_the_model_sees_a_line_read_wrong(monkeypatch):
    machine = _machine("one\r\ntwo\n", "r", newline=None)
    try:
        real_readline = type(machine.f).readline

        async def readline_untranslated(f, size=-1):
            return (await real_readline(f, size)).replace("\n", "\r\n")

        monkeypatch.setattr(type(machine.f), "readline", readline_untranslated)
        with pytest.raises(AssertionError, match="readline"):
            machine.readline(-1)
    finally:
        machine.teardown()


def test_the_model_sees_bytes_written_wrong():
    machine = _machine("", "w", encoding="utf-16")
    try:
        machine.write("x")
        machine.ref.write("y")  # behind the model's back
        with pytest.raises(AssertionError, match="the files differ"):
            machine.flush()
    finally:
        machine.teardown()


def test_the_model_sees_a_cookie_that_leads_elsewhere():
    machine = _machine("é" * 10, "r", encoding="utf-8")
    try:
        machine.read(3)
        machine.tell()
        machine.read(3)
        machine.cookies[0] = (machine.cookies[0][0] + 2, machine.cookies[0][1])  # one character further on
        machine.seek_to_cookie(0)
        with pytest.raises(AssertionError, match="read"):
            machine.read(-1)
    finally:
        machine.teardown()

