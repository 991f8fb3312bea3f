"""The JSON a browser may send for each Dash callback input and state, checked before Dash.

A callback receives whatever the request body says a component's property holds; a hand-made
request can put a dict where a text box's string belongs, or a list where a slider's number
does, and the callback then fails deep inside (a 500). ``dashboard.dash_guard`` checks every
input and state value of a ``/_dash-update-component`` body against the type this module
gives for it and answers 400 naming the component property (``operator-area.data``).

Types are looked up first by (component id, property), then by property alone (``n_clicks``
is a count on every button); pattern-matching ids (``{"type": "operator-hot", "grid": 12}``)
by their ``type`` and have their own keys typed too (``ID_KEYS``). ``spec_for`` returns None
for a pair this module does not know: ``tests/dashboard/test_route_fuzz.py`` fails while any
registered callback has such an input, so a new callback cannot go unchecked.
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter, ValidationError
from typing_extensions import TypedDict

Finite = Annotated[float, Field(allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0)] | None
Text = Annotated[str, Field(max_length=10_000)] | None
Number = Finite | None
RowId = Annotated[int, Field(ge=0, le=2**63 - 1)]
Choice = str | int | None
Choices = list[Annotated[str, Field(max_length=200)]] | None
LatLng = Annotated[list[Finite], Field(min_length=2, max_length=2)]
FeatureCollection = dict[str, Any] | None


class _LatLngDict(TypedDict):
    lat: Finite
    lng: Finite


class _MapClick(TypedDict, total=False):
    latlng: _LatLngDict


class _AreaRef(TypedDict):
    area: RowId


class _LabelClick(TypedDict):
    properties: _AreaRef


class _Row(TypedDict):
    id: RowId


class _Selection(TypedDict):
    kind: Literal["grid", "camera"]
    id: RowId


class _Option(TypedDict):
    value: str | int


class _Relayout(TypedDict, total=False):
    shapes: list[dict[str, Any]] | None


#: by property, for every component that has it
BY_PROPERTY: dict[str, Any] = {
    "n_clicks": Count,
    "n_intervals": Count,
    "start_date": Text,
    "end_date": Text,
    "pathname": Annotated[str, Field(pattern=r"^/", max_length=2000)] | None,
    "search": Text,
    "disabled": bool | None,
    "children": Any,  # what a component renders: text, components or a list of them
    "options": list[Any] | None,
    "zoom": Number,
    "center": LatLng | _LatLngDict | None,
    "bounds": Annotated[list[LatLng], Field(min_length=2, max_length=2)] | None,
    "clickData": _MapClick | None,
    "hideout": dict[str, Any] | str | None,
    "selectedRows": list[_Row] | None,
    "relayoutData": _Relayout | None,
}

#: by (component id, property): stores, and the values of inputs, dropdowns and checklists
BY_COMPONENT: dict[tuple[str, str], Any] = {
    ("app-lang", "data"): Literal["zh", "en"] | None,
    ("_pages_store", "data"): dict[str, Any] | None,
    # operator map
    ("operator-filter", "data"): dict[str, Any] | None,
    ("operator-area", "data"): RowId | None,
    ("operator-selection", "data"): _Selection | None,
    ("operator-cursor", "data"): dict[str, Any] | None,
    ("operator-slow-cursor", "data"): dict[str, Any] | None,
    ("operator-view", "data"): dict[str, Any] | None,
    ("operator-city-bounds", "data"): list[Any] | None,
    ("operator-points", "data"): FeatureCollection,
    ("operator-cones", "data"): FeatureCollection,
    ("operator-labels", "clickData"): _LabelClick | None,
    ("operator-window", "value"): Text,
    ("operator-grid-mode", "value"): Text,
    ("operator-layer-toggle", "value"): Choices,
    ("operator-cats", "value"): Choices,
    ("operator-cats", "options"): list[_Option] | None,
    ("operator-grids", "hideout"): dict[str, Any] | None,
    ("operator-playback", "value"): Number,
    # dispatch
    ("dispatch-selected", "data"): RowId | None,
    ("dispatch-changed", "data"): Count,
    ("dispatch-assignee", "value"): Choice,
    ("dispatch-merge-into", "value"): Choice,
    ("dispatch-reason", "value"): Text,
    ("dispatch-distinct", "value"): Choices,
    # privacy console
    ("privacy-camera", "value"): RowId | None,
    ("privacy-shapes", "data"): list[dict[str, Any]] | None,
    ("privacy-scope-kind", "value"): Text,
    ("privacy-scope-value", "value"): Text,
    ("privacy-targets", "value"): Choices,
    ("privacy-method", "value"): Text,
    ("privacy-strength", "value"): Number,
    ("privacy-permanent", "value"): Choices,
    ("privacy-grantee", "value"): Text,
    ("privacy-grant-cameras", "value"): Text,
    ("privacy-grant-minutes", "value"): Number | str,
    ("privacy-grant-reason", "value"): Text,
    ("privacy-grant-id", "value"): Number | str,
    ("privacy-change-id", "value"): Number | str,
    ("privacy-change-reason", "value"): Text,
    # admin console
    ("admin-new-name", "value"): Text,
    ("admin-new-role", "value"): Text,
    ("admin-new-districts", "value"): Text,
    ("admin-new-cameras", "value"): Text,
    ("admin-target-user", "value"): Text,
    ("admin-target-role", "value"): Text,
    ("admin-request-id", "value"): Text,
    ("admin-token-name", "value"): Text,
    ("admin-token-role", "value"): Text,
    # audit page
    ("audit-actor", "value"): Text,
    ("audit-action", "value"): Text,
}

#: the keys of pattern-matching ids, by the id's ``type``
ID_KEYS: dict[str, dict[str, Any]] = {
    "operator-crumb": {"area": RowId},
    "operator-hot": {"grid": RowId},
}


def spec_for(component_id: str | dict, prop: str) -> Any | None:
    """Return the type a callback input or state ``component_id.prop`` must hold, or None."""
    name = component_id.get("type") if isinstance(component_id, dict) else component_id
    if (name, prop) in BY_COMPONENT:
        return BY_COMPONENT[(name, prop)]
    return BY_PROPERTY.get(prop)


@cache
def _adapter(spec: Any) -> TypeAdapter:
    return TypeAdapter(spec)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in err["loc"] if not isinstance(p, str) or "[" not in p)
    return f"{err['msg']}" + (f" (at {where})" if where else "")


def value_problem(component_id: str | dict, prop: str, value: Any) -> str | None:
    """Return why ``value`` is not what ``component_id.prop`` may hold, or None if it is.

    A pair without a spec (``spec_for`` is None) is not judged here.
    """
    spec = spec_for(component_id, prop)
    if spec is None:
        return None
    try:
        _adapter(spec).validate_python(value, strict=True)
    except ValidationError as exc:
        return _first_error(exc)
    return None


def id_problem(component_id: str | dict) -> str | None:
    """Return why a pattern-matching id's keys are not of their types, or None."""
    if not isinstance(component_id, dict):
        return None
    keys = ID_KEYS.get(component_id.get("type"))
    if keys is None:
        return None
    for key, spec in keys.items():
        try:
            _adapter(spec).validate_python(component_id.get(key), strict=True)
        except ValidationError as exc:
            return f"id key {key!r}: {_first_error(exc)}"
    return None


def field_name(component_id: str | dict, prop: str) -> str:
    """Return the field name of an input or state in an error answer (``operator-area.data``)."""
    if isinstance(component_id, dict):
        return f"{component_id.get('type', 'component')}.{prop}"
    return f"{component_id}.{prop}"
