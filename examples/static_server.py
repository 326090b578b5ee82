#!/usr/bin/env python3
"""A FastAPI app that serves a folder of files and accepts uploads into it,
with no thread touching a file: ringlet does the stats, opens, reads, writes
and closes on io_uring.

    pip install 'ringlet[fastapi]' uvicorn      # FastAPI, python-multipart; uvicorn to serve
    python examples/static_server.py [FOLDER]   # uvicorn on http://127.0.0.1:8000, FOLDER default ./static
    # or: RINGLET_STATIC=FOLDER uvicorn --factory static_server:from_environment --app-dir examples

Then, from another shell:

    curl -F file=@README.md http://127.0.0.1:8000/upload      # {"name":"README.md","written":1234}
    curl -O http://127.0.0.1:8000/files/README.md              # the file back
    curl -I http://127.0.0.1:8000/files/README.md              # HEAD: ETag, Last-Modified, Content-Length
    curl -r 0-99 http://127.0.0.1:8000/files/README.md         # a range: 206, the first 100 bytes

Where the stock FastAPI app would write ``FileResponse`` (from fastapi.responses,
which is Starlette's) and ``await upload.read()`` then a write, both of which
go to a thread pool, this one writes ringlet's FileResponse and save_upload:
the same responses, the same uploads, through the ring.
"""

from __future__ import annotations

import os
import posixpath
import sys
from pathlib import Path
from typing import Dict, Union

from fastapi import FastAPI, HTTPException, UploadFile

import ringlet
from ringlet.integrations.starlette import FileResponse, save_upload


def _inside(folder: Path, name: str) -> Path:
    """folder / name, refusing a name that would leave the folder (../, an
    absolute path) or that names nothing."""
    clean = posixpath.normpath("/" + name).lstrip("/")
    if not clean or clean != name.strip("/") or clean.startswith(".."):
        raise HTTPException(status_code=404, detail="not found")
    return folder / clean


def create_app(folder: Union[str, os.PathLike[str]]) -> FastAPI:
    """The app, serving and storing files in folder (created if missing)."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    app = FastAPI(title="ringlet static server")

    @app.api_route("/files/{name:path}", methods=["GET", "HEAD"], response_class=FileResponse)
    async def download(name: str) -> FileResponse:
        path = _inside(root, name)
        if not await ringlet.os.path.isfile(path):
            raise HTTPException(status_code=404, detail="not found")
        return FileResponse(path)

    @app.post("/upload")
    async def upload(file: UploadFile) -> Dict[str, Union[str, int]]:
        name = posixpath.basename(file.filename or "")
        if not name or name.startswith("."):
            raise HTTPException(status_code=400, detail="a file name is needed")
        written = await save_upload(file, _inside(root, name))
        return {"name": name, "written": written}

    return app


def from_environment() -> FastAPI:
    """The app for uvicorn --factory: the folder named by $RINGLET_STATIC, else ./static."""
    return create_app(os.environ.get("RINGLET_STATIC", "static"))


if __name__ == "__main__":
    import uvicorn

    if len(sys.argv) > 1:
        os.environ["RINGLET_STATIC"] = sys.argv[1]
    uvicorn.run(from_environment(), host="127.0.0.1", port=8000)
