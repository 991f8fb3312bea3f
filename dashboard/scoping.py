"""What the signed-in principal may see, for every route and callback: scope and reporters.

Routes and Dash callbacks ask ``request_scope()`` and hand the result to the layer services,
which require it (``layers.services.scope``). No principal means nothing: ``Scope.NONE``.
``request_reveal()`` is the predicate the case services ask whether a case's reporter may be
shown in clear (``dashboard.policy.may_see_personal_data``).
"""

from __future__ import annotations

import functools

from dashboard.auth import current_principal
from dashboard.policy import may_see_personal_data
from layers.services.cases import Reveal
from layers.services.scope import Scope


def request_scope() -> Scope:
    """Return the scope of the request's principal (``Scope.NONE`` when nobody is signed in)."""
    p = current_principal()
    if p is None:
        return Scope.NONE
    return Scope.of(p.scopes)


def request_reveal() -> Reveal:
    """Return ``reveal(handler)``: True if the request's principal may see a case's reporter."""
    return functools.partial(may_see_personal_data, current_principal())
