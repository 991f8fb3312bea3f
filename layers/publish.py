"""Files published only after their writing was audited: a staged write, then a rename.

An export (``audit export``, ``python -m layers export``) must not leave a file behind whose
audit record never committed. ``published_after`` hands out a path in a private staging
folder beside the destination (same file system, so the final move is a rename); the caller
writes there and commits its audit record inside the block; only a block that ends cleanly
moves the staged files into place. Any exception (the write, the audit record, the commit)
removes the staging folder and leaves the destination as it was.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def published_after(path: Path | str, *, keep_existing: bool = False) -> Iterator[Path]:
    """Yield the staged twin of ``path``; on a clean exit move it (and siblings) to ``path``.

    Files written beside the staged path (a shapefile's ``.shx``, ``.dbf``, ``.prj``) move
    with it, the main file last. ``keep_existing`` starts the staged file as a copy of the
    current one (a GeoPackage gains a layer, its other layers stay).

    Raises
    ------
    OSError
        If the staging folder cannot be made beside ``path`` or the move fails.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent))
    try:
        staged = stage / path.name
        if keep_existing and path.exists():
            shutil.copy2(path, staged)
        yield staged
        siblings = sorted(p for p in stage.iterdir() if p.name != path.name)
        for member in (*siblings, staged):
            if member.exists():
                os.replace(member, path.parent / member.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
