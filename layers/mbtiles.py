"""Read a local MBTiles file: the offline base map's tiles (a SQLite file of PNG/JPEG images).

The file is opened read-only, one connection per thread; tile rows are stored TMS-numbered
(y flipped), ``MBTiles.tile`` takes XYZ numbers as Leaflet asks for them.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path


class MBTiles:
    """Read-only access to one MBTiles file (thread-safe): its metadata and its tiles."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(
                f"mbtiles_path: {self.path} does not exist; set GRIDSIGHT_MBTILES_PATH to an "
                "MBTiles file or unset it to run without a base map"
            )
        self._local = threading.local()
        conn = self._conn()
        try:
            self.metadata = dict(conn.execute("SELECT name, value FROM metadata").fetchall())
        except sqlite3.DatabaseError as exc:
            raise ValueError(
                f"mbtiles_path: {self.path} is not an MBTiles file ({exc}); it needs the "
                "'tiles' and 'metadata' tables"
            ) from exc
        self.format = self.metadata.get("format", "png")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            self._local.conn = conn
        return conn

    def tile(self, z: int, x: int, y: int) -> bytes | None:
        """Return the tile image at XYZ (z, x, y), or None if the file has none."""
        if z < 0 or z > 30 or not (0 <= x < 2**z and 0 <= y < 2**z):
            return None
        tms_y = (2**z - 1) - y
        row = (
            self._conn()
            .execute(
                "SELECT tile_data FROM tiles WHERE zoom_level=? AND tile_column=? AND tile_row=?",
                (z, x, tms_y),
            )
            .fetchone()
        )
        return None if row is None else bytes(row[0])
