"""A live incident feed for the demo: one realistic new incident every few seconds.

New incidents go through ``layers.services.incidents.create_incident`` (validation, grid,
responsible center, assignee, SLA deadline and the first workflow event), as any API report
would, with actor "simulator". Locations are hotspot-biased: most are drawn near a recent
incident (the history's hotspots and density carry over), the rest anywhere in a random grid.
Categories, sources, priorities, descriptions and reporters come from the same generators as
the seeded history (``layers.citygen.history``).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading

import numpy as np
import shapely
from sqlalchemy import select

from geo.measure import metres_per_degree
from layers.citygen import history, names
from layers.db import Database
from layers.models import Category, Grid, Incident, utcnow

log = logging.getLogger(__name__)

NEAR_RECENT_SHARE = 0.8  # share of new incidents drawn near a recent one
JITTER_M = 150.0  # spread around that recent incident
SAME_CATEGORY_SHARE = 0.5  # of those, share that repeat its category (a hotspot's theme)
RECENT_POOL = 2000  # how many recent incidents to draw from
REFRESH_EVERY = 50  # steps between reloads of the recent pool


class SimulatorError(RuntimeError):
    """The simulator cannot add an incident (e.g. the database holds no grids yet)."""


class IncidentSimulator:
    """Add a plausible new incident on each ``step``; ``start`` runs steps on a daemon thread.

    Parameters
    ----------
    db : Database
        A migrated database holding a city (grids, centers, responders).
    seed : int, optional
        Seed of the random generator (same seed and same database → same incidents).
    interval_s : float
        Seconds between two steps on the background thread.
    """

    def __init__(self, db: Database, seed: int | None = None, interval_s: float = 5.0) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s: {interval_s!r}; give a positive number of seconds")
        self.db = db
        self.interval_s = float(interval_s)
        self.rng = np.random.default_rng(seed)
        self.cats = history.CategoryDict.load()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._steps = 0
        self._recent: np.ndarray | None = None  # (k, 2) lon, lat
        self._recent_cat: np.ndarray | None = None
        self._grids: np.ndarray | None = None
        self._known: set[str] = set()

    # -- background thread ---------------------------------------------------------------
    @property
    def running(self) -> bool:
        """Return True while the background thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start adding incidents every ``interval_s`` seconds on a daemon thread."""
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="gridsight-simulator", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and wait up to ``timeout`` seconds for it to finish its step."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.step()
            except SimulatorError as exc:
                log.warning("simulator: %s", exc)
            except Exception:  # noqa: BLE001 - keep the feed alive; the next tick retries
                log.exception("simulator step failed")

    # -- one incident --------------------------------------------------------------------
    def step(self, now: dt.datetime | None = None) -> int:
        """Insert one new incident (status "collected") at ``now``; return its id.

        Raises
        ------
        SimulatorError
            If the database holds no grids, or no point inside a grid was found.
        """
        from layers.services.incidents import create_incident
        from layers.services.spatial import locator

        now = (now or utcnow()).astimezone(dt.UTC)
        with self._lock, self.db.session() as s:
            if self._grids is None or self._steps % REFRESH_EVERY == 0:
                self._load(s)
            self._steps += 1
            loc = locator(s)
            lon, lat, cat_code = self._place(loc)
            data = self._describe(s, lon, lat, cat_code, int(loc.grid_at([lon], [lat])[0]))
            row = create_incident(s, data, actor="simulator", role="system", now=now)
            return int(row.id)

    def _load(self, s) -> None:
        grids = s.execute(select(Grid.geom_wkb).order_by(Grid.id)).scalars().all()
        if not grids:
            raise SimulatorError("the database holds no grids yet; seed a city first")
        self._grids = shapely.from_wkb(grids)
        recent = s.execute(
            select(Incident.lon, Incident.lat, Incident.category_code)
            .order_by(Incident.id.desc())
            .limit(RECENT_POOL)
        ).all()
        self._recent = np.array([(r.lon, r.lat) for r in recent]).reshape(-1, 2)
        self._recent_cat = np.array([r.category_code for r in recent], dtype=object)
        self._known = set(s.execute(select(Category.code)).scalars()) or set(self.cats.codes)

    def _place(self, loc) -> tuple[float, float, str | None]:
        """Return (lon, lat, category to repeat or None) of a point inside some grid."""
        rng = self.rng
        for _ in range(20):
            cat = None
            if len(self._recent) and rng.random() < NEAR_RECENT_SHARE:
                k = int(rng.integers(len(self._recent)))
                lon0, lat0 = self._recent[k]
                dx, dy = rng.normal(0, JITTER_M, 2)
                m_lon, m_lat = metres_per_degree(lat0)
                lon, lat = lon0 + dx / m_lon, lat0 + dy / m_lat
                if rng.random() < SAME_CATEGORY_SHARE:
                    cat = str(self._recent_cat[k])
            else:
                g = int(rng.integers(len(self._grids)))
                x, y = history.points_in_polygons(rng, self._grids, np.array([g]))
                lon, lat = float(x[0]), float(y[0])
            if loc.grid_at([lon], [lat])[0] >= 0:
                return float(lon), float(lat), cat
        raise SimulatorError("found no point inside a grid in 20 tries")

    def _describe(self, s, lon: float, lat: float, cat_code: str | None, grid_id: int) -> dict:
        rng = self.rng
        cats = self.cats
        if cat_code is None or cat_code not in self._known:
            usable = np.array([c in self._known for c in cats.codes]) & (cats.weights > 0)
            w = np.where(usable, cats.weights, 0.0)
            ci = int(rng.choice(len(w), p=w / w.sum()))
        else:
            ci = cats.index(cat_code) if cat_code in set(cats.codes) else -1
        if ci < 0:  # a local category the shipped dictionary does not know
            return self._data(lon, lat, cat_code, 3, "public", "发现问题需处置", rng)
        idx = np.array([ci])
        source = str(history.sample_sources(rng, cats, idx)[0])
        priority = int(history.sample_priorities(rng, cats, idx)[0])
        place = (s.scalar(select(Grid.name).where(Grid.id == grid_id)) or "").split("第")[0]
        text = str(history.describe(rng, cats, idx, np.array([place], dtype=object))[0])
        return self._data(lon, lat, str(cats.codes[ci]), priority, source, text, rng)

    @staticmethod
    def _data(lon, lat, category, priority, source, text, rng) -> dict:
        silent = source in history.NO_REPORTER_SOURCES
        return {
            "lon": lon,
            "lat": lat,
            "category": category,
            "priority": priority,
            "source": source,
            "description": text,
            "reporter_name": "" if silent else str(names.person_names(rng, 1)[0]),
            "reporter_phone": "" if silent else str(names.mobile_numbers(rng, 1)[0]),
        }
