"""The extension asks glibc for nothing newer than the wheel's manylinux tag
allows (manylinux_2_28: `make dist` would refuse to repair it).  Caught here,
in `make test`, rather than at the end of `make dist`: fstat, for one, is a
glibc symbol only from 2.33 (csrc/fileinfo.h uses statx instead)."""

import re
import shutil
import subprocess

import pytest

MAX_GLIBC_MINOR = 28  # as tools/check_dist.py


@pytest.mark.own_backend
def test_no_glibc_symbol_newer_than_the_wheel_tag():
    from ringlet import _ringlet

    objdump = shutil.which("objdump")
    if objdump is None:
        pytest.skip("objdump (binutils) is not installed: cannot list the extension's symbols")
    out = subprocess.run([objdump, "-T", _ringlet.__file__], capture_output=True, text=True, check=True).stdout
    needed = {}
    for line in out.splitlines():
        m = re.search(r"\(?GLIBC_2\.(\d+)(?:\.\d+)?\)?\s+(\S+)$", line)
        if m and "*UND*" in line:
            needed[m.group(2)] = int(m.group(1))
    assert needed, "no glibc symbol found: objdump's output changed?\n" + out[:500]
    too_new = {name: f"GLIBC_2.{v}" for name, v in needed.items() if v > MAX_GLIBC_MINOR}
    assert not too_new, f"symbols newer than glibc 2.{MAX_GLIBC_MINOR}: {too_new}"
