"""The frameworks stay optional: ``import ringlet`` imports none of them, and
an integration imported without its framework names the extra to install.
Each check runs in a fresh interpreter, whose sys.modules is its own."""

import subprocess
import sys
import textwrap

import pytest

FRAMEWORKS = ("starlette", "fastapi", "aiohttp", "anyio", "uvicorn", "httpx")


def _python(code):
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_import_ringlet_imports_no_framework():
    loaded = _python(f"""
        import sys
        import ringlet, ringlet.os, ringlet.integrations
        print(sorted(m for m in {FRAMEWORKS!r} if m in sys.modules))
    """)
    assert loaded == "[]"


@pytest.mark.parametrize("module, hidden, extra", [
    ("ringlet.integrations.starlette", "starlette", "starlette"),
    ("ringlet.integrations.aiohttp", "aiohttp", "aiohttp"),
])
def test_integration_without_its_framework_names_the_extra(module, hidden, extra):
    message = _python(f"""
        import sys
        sys.modules[{hidden!r}] = None  # as if not installed: importing it raises ImportError
        try:
            import {module}
        except ImportError as exc:
            print(exc)
        else:
            print("imported")
    """)
    assert f"pip install ringlet[{extra}]" in message
    assert message.startswith(module)
