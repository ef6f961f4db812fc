"""Atomic output files: write to a temporary name in the same folder, then rename.

An interrupted or failed write never leaves a half-written file under the final
name (the temporary file is removed on error).
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Union


@contextmanager
def atomic_path(path: Union[str, os.PathLike]):
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write(path, data: Union[str, bytes]) -> None:
    """Write text (UTF-8, newlines untranslated) or bytes atomically."""
    with atomic_path(path) as tmp:
        if isinstance(data, bytes):
            with open(tmp, "wb") as f:
                f.write(data)
        else:
            with open(tmp, "w", encoding="utf-8", newline="", errors="surrogateescape") as f:
                f.write(data)


def atomic_write_parquet(table, path) -> None:
    """Write a pyarrow table as Parquet atomically."""
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
