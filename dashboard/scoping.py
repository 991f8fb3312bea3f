"""The request's ``Scope``: what the signed-in principal may see, for every route and callback.

Routes and Dash callbacks ask ``request_scope()`` and hand the result to the layer services,
which require it (``layers.services.scope``). No principal means nothing: ``Scope.NONE``.
"""

from __future__ import annotations

from dashboard.auth import current_principal
from layers.services.scope import Scope


def request_scope() -> Scope:
    """Return the scope of the request's principal (``Scope.NONE`` when nobody is signed in)."""
    p = current_principal()
    if p is None:
        return Scope.NONE
    return Scope.of(p.scopes)
