"""Tests for geo.rollup: sums up the hierarchy, ratios from summed parts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from geo import rollup

HIER = pd.DataFrame(
    {
        "community": ["c1", "c1", "c2", "c3"],
        "street": ["s1", "s1", "s1", "s2"],
        "district": ["d1", "d1", "d1", "d1"],
        "city": ["x", "x", "x", "x"],
    },
    index=pd.Index(["g1", "g2", "g3", "g4"], name="grid"),
)
PER_GRID = pd.DataFrame(
    {"closed": [1, 900, 10, 0], "due": [2, 960, 10, 0], "on_time": [1, 726, 10, 0]},
    index=["g1", "g2", "g3", "g4"],
)
RATIOS = {"结案率": ("closed", "due"), "按期结案率": ("on_time", "due")}


def test_city_fixture_ratios_are_recomputed_not_averaged():
    out = rollup(PER_GRID, HIER, sums=["closed", "due", "on_time"], ratios=RATIOS)
    city = out.loc[("city", "x")]
    assert city["closed"] == 911 and city["due"] == 972
    # the real month from DOMAIN.md: 911/972 = 93.72 %, 737/972 = 75.82 %
    assert round(city["结案率"] * 100, 2) == 93.72
    assert round(city["按期结案率"] * 100, 2) == 75.82
    # an average of the grid rates would be (0.5 + 0.9375 + 1) / 3 = 0.8125 instead
    assert out.loc[("community", "c1"), "结案率"] == pytest.approx(901 / 962)
    assert np.isnan(out.loc[("community", "c3"), "结案率"])  # 0 due -> NaN, not 0 or inf


def test_levels_and_order():
    out = rollup(PER_GRID, HIER, sums=["closed"])
    assert list(out.index.get_level_values(0).unique()) == [
        "grid",
        "community",
        "street",
        "district",
        "city",
    ]
    assert out.loc["street"]["closed"].to_dict() == {"s1": 911, "s2": 0}
    assert out.loc["grid"].index.tolist() == ["g1", "g2", "g3", "g4"]


def test_quiet_grids_count_zero_and_orphans_fail():
    out = rollup(PER_GRID.iloc[:2], HIER, sums=["closed", "due"], ratios={"r": ("closed", "due")})
    assert out.loc[("grid", "g3"), "closed"] == 0
    assert out.loc[("city", "x"), "closed"] == 901
    with pytest.raises(ValueError, match="no parent"):
        rollup(pd.DataFrame({"closed": [1]}, index=["g9"]), HIER, sums=["closed"])
    with pytest.raises(ValueError, match="missing column"):
        rollup(PER_GRID, HIER, sums=["nope"])
    with pytest.raises(ValueError, match="level column"):
        rollup(PER_GRID, HIER.drop(columns="city"), sums=["closed"])
    with pytest.raises(ValueError, match="in sums"):
        rollup(PER_GRID, HIER, sums=["closed"], ratios={"r": ("closed", "due")})
