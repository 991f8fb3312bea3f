"""``routing.nearest_available`` looks in growing windows; it must answer as a full scan does."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from sqlalchemy import update

from geo.measure import haversine_m
from layers.db import Database
from layers.models import Responder
from layers.seed import seed_city
from layers.services import routing
from tests.dbs import db_url


@pytest.fixture(scope="module")
def city(db_backend, tmp_path_factory):
    db = Database(db_url(tmp_path_factory.mktemp("near") / "c.sqlite", db_backend))
    seed_city(db, scale="tiny", seed=3, now=dt.datetime(2026, 11, 23, tzinfo=dt.UTC),
              progress=False)  # fmt: skip
    with db.session() as s:  # most people busy: the nearest free one is often far away
        s.execute(update(Responder).where(Responder.id % 7 != 0).values(available=False))
    yield db
    db.dispose()


def _brute(session, lon, lat, n):
    people = routing._positions(session, Responder.available.is_(True))
    ids = np.array([p[0] for p in people])
    d = haversine_m(lon, lat, [p[1] for p in people], [p[2] for p in people])
    order = np.lexsort((ids, np.round(d, 3)))[:n]
    return [(int(ids[i]), float(d[i])) for i in order]


@pytest.mark.parametrize("n", [1, 3])
def test_windowed_search_equals_the_full_scan(city, n):
    rng = np.random.default_rng(5)
    with city.session() as s:
        people = routing._positions(s, Responder.available.is_(True))
        xs = [p[1] for p in people]
        ys = [p[2] for p in people]
        # inside the city, at its edge and well outside it (only the last window finds anyone)
        pts = [(rng.uniform(min(xs), max(xs)), rng.uniform(min(ys), max(ys))) for _ in range(60)]
        pts += [(min(xs) - 0.5, min(ys) - 0.5), (max(xs) + 0.05, max(ys))]
        for lon, lat in pts:
            got = routing.nearest_available(s, float(lon), float(lat), n=n)
            assert got == _brute(s, float(lon), float(lat), n), (lon, lat)
