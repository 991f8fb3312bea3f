"""``python -m layers seed``: a deterministic, realistic demo city (昆明市, 530100).

Builds, in one transaction, districts (generated, or real outlines from ``--districts``),
streets, communities and grids tiling every district with no gaps or overlaps (nested Voronoi
tessellations, denser downtown), governance centers at four levels, grid workers and center
staff, cameras along a simulated road network with the class mix and GB/T 28181 IDs of a
雪亮工程 deployment, the incident category dictionary, and ~90 days of incident history with
hotspots, a daily rhythm and a workflow consistent with each case's age.

Same ``--seed`` and same ``--now`` give identical data; without ``--now`` the history ends at
the current time (only the time stamps move). The generators live in ``layers.citygen``;
this module turns them into rows.

The package: ``districts`` (input outlines), ``plan`` (the geometry, before any row),
``city`` (``seed_city``: areas, grids, centers, staff), ``cameras``, ``incidents`` (the
history), ``bulk`` (fast writing) and ``cli`` (the ``seed`` subcommand).
"""

from layers.seed.city import DEFAULT_SEED, existing_city, seed_city
from layers.seed.cli import add_parser, run
from layers.seed.districts import CityExistsError, DistrictsError, SeedError, load_districts
from layers.seed.plan import SCALES, Scale

__all__ = [
    "DEFAULT_SEED",
    "SCALES",
    "CityExistsError",
    "DistrictsError",
    "Scale",
    "SeedError",
    "add_parser",
    "existing_city",
    "load_districts",
    "run",
    "seed_city",
]
