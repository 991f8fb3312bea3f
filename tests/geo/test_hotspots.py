"""Tests for geo.hotspots (Getis-Ord Gi*) on hand-checked examples."""

from __future__ import annotations

import math

import geopandas as gpd
import numpy as np
import pytest
import shapely

from geo import hotspots

# Five unit-ish squares in a row (queen = rook here). Counts x = [1, 2, 3, 4, 10]:
# n = 5, mean = 4, sum x^2 = 130, S = sqrt(130/5 - 4^2) = sqrt(10).
# Gi* (self included, binary):  z_i = (sum_j w_ij x_j - mean * W_i)
#                                     / (S * sqrt((n * W_i - W_i^2) / (n - 1)))
# Cell 0: neighbours {0,1}, W=2, sum=3:  z = (3 - 8) / (sqrt(10) * sqrt(6/4)) = -5/sqrt(15)
# Cell 1: {0,1,2}, W=3, sum=6:           z = (6 - 12) / (sqrt(10) * sqrt(6/4)) = -6/sqrt(15)
# Cell 2: {1,2,3}, W=3, sum=9:           z = -3/sqrt(15)
# Cell 3: {2,3,4}, W=3, sum=17:          z = 5/sqrt(15)
# Cell 4: {3,4}, W=2, sum=14:            z = 6/sqrt(15)
# Written as 116 + i / 100 on both sides so neighbours share vertices exactly.
STRIP = [shapely.box(116 + i / 100, 39.0, 116 + (i + 1) / 100, 39.01) for i in range(5)]
COUNTS = [1, 2, 3, 4, 10]
EXPECTED_Z = np.array([-5, -6, -3, 5, 6]) / math.sqrt(15)


def test_gi_star_matches_hand_computation():
    out = hotspots(STRIP, COUNTS)
    np.testing.assert_allclose(out["gi_z"], EXPECTED_Z, rtol=1e-9)
    # two-sided normal p for z = 6/sqrt(15) = 1.549: 2 * (1 - Phi(1.549)) = 0.1213
    assert out["p_value"].iloc[4] == pytest.approx(0.12134, abs=1e-4)
    assert (out["hotspot"] == "not significant").all()


def test_distance_band_equals_contiguity_on_the_strip():
    # centroids are ~950 m apart east-west at 39 N; a 1.2 km band links only neighbours
    out = hotspots(STRIP, COUNTS, distance_m=1200)
    np.testing.assert_allclose(out["gi_z"], EXPECTED_Z, rtol=1e-9)


def test_hot_and_cold_labels_on_a_lattice():
    cells = [
        shapely.box(116 + i / 100, 39 + j / 100, 116 + (i + 1) / 100, 39 + (j + 1) / 100)
        for j in range(8)
        for i in range(8)
    ]
    counts = np.zeros(64)
    counts[[0, 1, 8, 9]] = 50  # a hot corner
    series = gpd.GeoSeries(cells, index=[f"g{i}" for i in range(64)], crs="EPSG:4326")
    out = hotspots(series, counts)
    assert list(out.index[:2]) == ["g0", "g1"]
    assert out.loc["g0", "hotspot"] == "hot"
    assert out.loc["g63", "hotspot"] == "not significant"
    assert out["gi_z"].idxmax() in {"g0", "g1", "g8", "g9"}


def test_constant_counts_and_bad_input():
    out = hotspots(STRIP, [3, 3, 3, 3, 3])
    assert out["gi_z"].isna().all() and (out["hotspot"] == "not significant").all()
    with pytest.raises(ValueError, match="counts has"):
        hotspots(STRIP, [1, 2])
    with pytest.raises(ValueError, match="finite"):
        hotspots(STRIP, [1, 2, np.nan, 4, 5])
    with pytest.raises(ValueError, match="empty"):
        hotspots([*STRIP, shapely.Polygon()], [1, 2, 3, 4, 5, 6])


def test_precomputed_weights_give_the_same_z_and_must_fit():
    from geo.hotspots import neighbourhood_weights

    w = neighbourhood_weights(STRIP)
    out = hotspots(STRIP, COUNTS, weights=w)
    np.testing.assert_allclose(out["gi_z"], EXPECTED_Z, rtol=1e-9)
    np.testing.assert_allclose(hotspots(STRIP, COUNTS[::-1], weights=w)["gi_z"],
                               hotspots(STRIP, COUNTS[::-1])["gi_z"], rtol=1e-12)  # fmt: skip
    with pytest.raises(ValueError, match="weights hold 5 grids, not 4"):
        hotspots(STRIP[:4], COUNTS[:4], weights=w)


@pytest.mark.parametrize("distance_m", [None, 1500.0])
def test_closed_form_gi_star_equals_esda(distance_m):
    """The sparse closed form gives esda's G_Local(star=True, transform="B") z-scores."""
    import warnings

    import esda
    import libpysal

    rng = np.random.default_rng(3)
    cells = [shapely.box(116 + i / 100, 39 + j / 100, 116 + (i + 1) / 100, 39 + (j + 1) / 100)
             for i in range(9) for j in range(7)]  # fmt: skip
    cells.append(shapely.box(117.0, 40.0, 117.01, 40.01))  # an island far away
    y = rng.poisson(3, len(cells)).astype(float)
    y[5] = 40.0
    frame = gpd.GeoDataFrame(geometry=cells)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if distance_m is None:
            w = libpysal.weights.Queen.from_dataframe(frame, use_index=False)
        else:
            from geo.crs import from_wgs84, local_metric_crs

            c = np.array([g.centroid.coords[0] for g in cells])
            x_m, y_m = from_wgs84(c[:, 0], c[:, 1], local_metric_crs(c[:, 0], c[:, 1]))
            w = libpysal.weights.DistanceBand(np.column_stack([x_m, y_m]), threshold=distance_m)
        want = esda.G_Local(y, w, transform="B", star=True, permutations=0).Zs
    got = hotspots(cells, y, distance_m=distance_m)["gi_z"].to_numpy()
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
