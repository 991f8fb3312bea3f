"""Roll-ups of per-grid counts and KPIs up the administrative hierarchy.

grid 网格 -> community 社区/村 -> street 街道/乡镇 -> district 区县 -> city 市. Counts are summed;
ratios such as 结案率 (closed / due-to-close) are recomputed from the summed numerator and
denominator at every level, never averaged (an average of rates weights a grid with 2 cases
like one with 2,000).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = ["LEVELS", "rollup"]

LEVELS = ("community", "street", "district", "city")


def rollup(
    per_grid: pd.DataFrame,
    hierarchy: pd.DataFrame,
    *,
    sums: Sequence[str],
    ratios: Mapping[str, tuple[str, str]] | None = None,
    levels: Sequence[str] = LEVELS,
) -> pd.DataFrame:
    """Return counts and ratio KPIs aggregated at the grid level and every parent level.

    Parameters
    ----------
    per_grid : pandas.DataFrame
        Indexed by grid code; the ``sums`` columns hold counts (missing values count as 0).
    hierarchy : pandas.DataFrame
        Indexed by grid code, one column per name in ``levels`` giving the parent code at
        that level (for example columns community, street, district, city). Every grid of
        ``per_grid`` must appear; grids of ``hierarchy`` absent from ``per_grid`` count 0, so
        quiet grids still show up in their parents.
    sums : sequence of str
        Columns to add up.
    ratios : mapping of name -> (numerator column, denominator column), optional
        For example ``{"结案率": ("closed", "due")}``. Both columns must be in ``sums``. The
        ratio is NaN where the denominator sums to 0.
    levels : sequence of str, default ("community", "street", "district", "city")
        Hierarchy columns, finest first.

    Returns
    -------
    pandas.DataFrame
        MultiIndex (level, code) with level in ``("grid", *levels)``, columns ``sums`` then
        ``ratios``. Rows are sorted by level (finest first), then code.

    Raises
    ------
    ValueError
        For missing columns, grids without a parent, or a ratio over a column not summed.
    """
    ratios = dict(ratios or {})
    sums = list(sums)
    levels = list(levels)
    missing = [c for c in sums if c not in per_grid.columns]
    if missing:
        raise ValueError(f"per_grid is missing column(s) {missing}")
    missing = [c for c in levels if c not in hierarchy.columns]
    if missing:
        raise ValueError(f"hierarchy is missing level column(s) {missing}")
    for name, (num, den) in ratios.items():
        if num not in sums or den not in sums:
            raise ValueError(f"ratio {name!r} needs {num!r} and {den!r} in sums")
    orphans = per_grid.index.difference(hierarchy.index)
    if len(orphans):
        raise ValueError(
            f"{len(orphans)} grid(s) have no parent in hierarchy, e.g. {list(orphans[:3])}"
        )
    if hierarchy[levels].isna().any().any():
        bad = hierarchy.index[hierarchy[levels].isna().any(axis=1)]
        raise ValueError(f"hierarchy has empty parent codes for grid(s) {list(bad[:3])}")
    if per_grid.index.has_duplicates or hierarchy.index.has_duplicates:
        raise ValueError("per_grid and hierarchy must have one row per grid code")

    values = per_grid[sums].reindex(hierarchy.index).fillna(0)
    frames = [values.assign(level="grid", code=values.index)]
    for level in levels:
        agg = values.groupby(hierarchy[level].to_numpy()).sum()
        frames.append(agg.assign(level=level, code=agg.index))
    out = pd.concat(frames, ignore_index=True)
    order = {name: i for i, name in enumerate(["grid", *levels])}
    out = out.sort_values(["level", "code"], key=lambda s: s.map(order) if s.name == "level" else s)
    out = out.set_index(["level", "code"])[sums]
    for name, (num, den) in ratios.items():
        den_v = out[den].to_numpy(dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[name] = np.where(den_v > 0, out[num].to_numpy(dtype=float) / den_v, np.nan)
    return out
