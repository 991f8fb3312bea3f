"""Retention: purge personal data older than the configured period, now and periodically.

The audit log is never touched (the Cybersecurity Law asks for ≥ 6 months); what goes is
reporter names/phones of old incidents and old snapshot files (``audit.purge_personal_data``).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from layers.db import Database
from layers.services.audit import PurgeReport, purge_personal_data

log = logging.getLogger(__name__)


class RetentionLoop:
    """Purge personal data older than ``days`` at start and then every ``interval_s``."""

    def __init__(
        self, db: Database, *, days: int, snapshots_dir: Path, interval_s: float = 6 * 3600.0
    ) -> None:
        self.db = db
        self.days = days
        self.snapshots_dir = snapshots_dir
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="retention", daemon=True)

    def run_once(self) -> PurgeReport:
        """Return the purge report of one pass (incident reporter data + old snapshots)."""
        return purge_personal_data(
            self.db,
            older_than_days=self.days,
            snapshots_dir=self.snapshots_dir,
            actor="retention",
            role="system",
        )

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                log.info("retention purge: %s", self.run_once())
            except Exception:  # noqa: BLE001 - keep the loop alive; the next pass retries
                log.exception("retention purge failed; retrying next pass")
            self._stop.wait(self.interval_s)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
