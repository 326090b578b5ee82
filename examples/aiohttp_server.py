#!/usr/bin/env python3
"""An aiohttp app that serves a folder of files and accepts uploads into it,
with no thread touching a file: ringlet does the lookups, stats, opens,
reads, writes and closes on io_uring.

    pip install 'ringlet[aiohttp]'
    python examples/aiohttp_server.py [FOLDER]   # http://127.0.0.1:8080, FOLDER default ./static

Then, from another shell:

    curl -F file=@README.md http://127.0.0.1:8080/upload      # {"name": "README.md", "written": 1234}
    curl -O http://127.0.0.1:8080/files/README.md              # the file back
    curl -I http://127.0.0.1:8080/files/README.md              # HEAD: ETag, Last-Modified, Content-Length
    curl -r 0-99 http://127.0.0.1:8080/files/README.md         # a range: 206, the first 100 bytes

Where the stock app would add ``web.static`` (each request's lookup in the
executor) and write each uploaded chunk with a blocking write, this one
adds ringlet's ``static`` and streams the upload with ``save_upload``: the
same responses (ranges, HEAD, ETag, 304, 404 for a name that would leave
the folder), the same uploads, through the ring.
"""

from __future__ import annotations

import os
import posixpath
import sys
from pathlib import Path
from typing import Union

from aiohttp import BodyPartReader, web

from ringlet.integrations.aiohttp import save_upload, static


def create_app(folder: Union[str, os.PathLike[str]]) -> web.Application:
    """The app, serving and storing files in folder (created if missing)."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)

    async def upload(request: web.Request) -> web.Response:
        part = await (await request.multipart()).next()  # streamed, never all in memory
        if not isinstance(part, BodyPartReader):  # no part, or a nested multipart
            raise web.HTTPBadRequest(text="a file is needed")
        name = posixpath.basename(part.filename or "")  # no folder: the file lands in root
        if not name or name.startswith("."):
            raise web.HTTPBadRequest(text="a file name is needed")
        written = await save_upload(part, root / name)
        return web.json_response({"name": name, "written": written})

    app = web.Application(client_max_size=1 << 30)
    app.router.add_post("/upload", upload)
    app.add_routes([static("/files", root)])
    return app


if __name__ == "__main__":
    web.run_app(create_app(sys.argv[1] if len(sys.argv) > 1 else "static"), host="127.0.0.1", port=8080)
