"""ringlet.integrations: web frameworks serving and storing files through ringlet.

Each module imports its framework, which is an optional dependency (an
extra of ringlet); ``import ringlet`` imports none of them.

    from ringlet.integrations.starlette import FileResponse, StaticFiles, save_upload  # ringlet[starlette], FastAPI
    from ringlet.integrations.aiohttp import FileResponse, save_upload, static         # ringlet[aiohttp]
"""

from __future__ import annotations

__all__ = ["missing_framework"]


def missing_framework(module: str, framework: str, extra: str) -> ImportError:
    """The ImportError an integration raises when its framework is absent:
    it names the extra that installs it."""
    return ImportError(f"{module} needs {framework}, which is not installed: pip install ringlet[{extra}]",
                       name=module)
