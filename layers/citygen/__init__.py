"""Pure generators behind the demo city (``python -m layers seed``) and the incident simulator.

numpy/shapely in, numpy/shapely/str out: no database here. ``layers.seed`` turns what these
modules return into rows; ``layers.simulator`` reuses the incident generator one at a time.

- ``names``: Chinese person names, mobile and landline numbers, place names;
- ``tiling``: the local metric plane, the density model and the nested Voronoi tiling;
- ``roads``: a simulated road network and camera placement along it;
- ``history``: incident categories, sources, rhythms and workflow timestamps.

Every function takes a ``numpy.random.Generator``: the same generator state gives the same
output, which is what makes ``seed --seed N`` reproducible.
"""
