"""Holding a caller's buffer while an operation may touch it: one check for
the thread engine and the front end (the C engine makes its own, with the
same message)."""

from __future__ import annotations

import pickle
from typing import Any

from . import _contract as contract


def hold_buffer(obj: Any, writable: bool, method: str) -> tuple[pickle.PickleBuffer, memoryview]:
    """Export obj's buffer for as long as the operation may touch it (it
    cannot be resized or released meanwhile), as a flat byte view."""
    try:
        holder: pickle.PickleBuffer | None = pickle.PickleBuffer(obj)
    except (TypeError, BufferError, ValueError):
        if not writable:
            raise  # the buffer protocol's own error, as a built-in file's write gives it
        holder = None
    if holder is not None:
        view = memoryview(holder)
        if view.c_contiguous and not (writable and view.readonly):
            if view.ndim != 1 or view.format != "B":
                view = view.cast("B")
            return holder, view
        view.release()
        holder.release()
    if writable:
        raise TypeError(contract.NOT_WRITABLE_BUFFER.format(method=method, type=contract.argument_type(obj)))
    raise BufferError(contract.NOT_CONTIGUOUS)


def check_buffer(obj: Any, writable: bool, method: str) -> None:
    """Raise what hold_buffer would raise for obj, holding nothing: for a
    call that fails anyway, where io converts its argument first."""
    holder, view = hold_buffer(obj, writable, method)
    view.release()
    holder.release()
