"""Files written whole or not at all."""

from __future__ import annotations

import os
import tempfile


def write_atomic(path, write):
    """Calls write(f) on a temporary file beside `path`, then renames it over
    `path` once complete (flushed and synced): a reader never sees half a
    file, and a failure leaves nothing behind. Returns the path written."""
    path = os.fsdecode(os.fspath(path))
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".mlp-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
