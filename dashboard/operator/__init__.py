"""The operator situation map (the home page ``/``), in rooms.

``common`` holds the page's constants and coordinate helpers, ``panes`` the declarative
table of map panes and their layers, ``layout`` the page skeleton, ``views`` the pieces the
callbacks render (labels, legend, cards, trend chart, feed), ``live`` the live refresh as
Dash ``Patch`` objects (the protocol itself is ``layers.services.refresh``), and
``callbacks`` the callbacks with their wiring. ``dashboard/pages/operator.py`` registers the
page and wires the callbacks into each app.
"""
