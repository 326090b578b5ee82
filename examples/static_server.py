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

Where the stock FastAPI app would mount ``StaticFiles`` (from
fastapi.staticfiles, which is Starlette's) and write ``await upload.read()``
then a write, all of which go to a thread pool, this one mounts ringlet's
StaticFiles and calls save_upload: the same responses (ranges, HEAD, ETag,
304, 404 for a name that would leave the folder), the same uploads,
through the ring.
"""

from __future__ import annotations

import os
import posixpath
import sys
from pathlib import Path
from typing import Dict, Union

from fastapi import FastAPI, HTTPException, UploadFile

from ringlet.integrations.starlette import StaticFiles, save_upload


def create_app(folder: Union[str, os.PathLike[str]]) -> FastAPI:
    """The app, serving and storing files in folder (created if missing)."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    app = FastAPI(title="ringlet static server")

    @app.post("/upload")
    async def upload(file: UploadFile) -> Dict[str, Union[str, int]]:
        name = posixpath.basename(file.filename or "")  # no folder: the file lands in root
        if not name or name.startswith("."):
            raise HTTPException(status_code=400, detail="a file name is needed")
        written = await save_upload(file, root / name)
        return {"name": name, "written": written}

    app.mount("/files", StaticFiles(directory=root), name="files")

    return app


def from_environment() -> FastAPI:
    """The app for uvicorn --factory: the folder named by $RINGLET_STATIC, else ./static."""
    return create_app(os.environ.get("RINGLET_STATIC", "static"))


if __name__ == "__main__":
    import uvicorn

    if len(sys.argv) > 1:
        os.environ["RINGLET_STATIC"] = sys.argv[1]
    uvicorn.run(from_environment(), host="127.0.0.1", port=8000)
