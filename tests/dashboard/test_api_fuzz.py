"""Fuzzing the incident API: schemathesis from our own OpenAPI document, plus hypothesis bodies.

The only assertion is the contract "never a 5xx": every generated request, valid or not, gets
a 2xx or a 4xx with a JSON error.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.incident_city import DX, DY, LAT0, LON0
from dashboard.app import create_app
from dashboard.routes.openapi import openapi_document
from layers.settings import load_settings
from tests.dbs import new_db
from tests.helpers_auth import bearer


@pytest.fixture(scope="module")
def fuzz_app(db_backend, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    db = new_db(tmp / "gs.sqlite", db_backend)
    settings = load_settings(db_url=db.url, data_dir=tmp, seed_on_start=False, simulator=False)
    app = create_app(settings, db=db, start_background=False)
    app.fuzz_headers = bearer(app, "dispatcher")
    return app


# The document is static (``openapi_document``); test_api_incidents checks that the server
# serves exactly it and that it covers every route. (schemathesis' from_fixture does not run
# under pytest 9, so the schema is loaded here and requests go to the WSGI app.)
schema = schemathesis.openapi.from_dict(openapi_document())


@schema.parametrize()
@settings(max_examples=25, deadline=None,
          suppress_health_check=list(HealthCheck))  # fmt: skip
def test_no_5xx_for_any_schema_generated_request(case, fuzz_app):
    response = case.call(app=fuzz_app.server, base_url="http://localhost",
                         headers=fuzz_app.fuzz_headers)  # fmt: skip
    assert response.status_code < 500, (case.as_curl_command(), response.text[:500])
    if response.status_code >= 400:
        ctype = {k.lower(): v for k, v in response.headers.items()}.get("content-type")
        ctype = ctype[0] if isinstance(ctype, list) else ctype
        assert ctype and ctype.startswith("application/json"), (response.status_code, ctype)


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
in_city = st.fixed_dictionaries(
    {"lon": st.floats(LON0 - 0.01, LON0 + 8 * DX + 0.01),
     "lat": st.floats(LAT0 - 0.01, LAT0 + 2 * DY + 0.01),
     "category": st.sampled_from(["ENV", "SECURITY", "EMERGENCY", "DISPUTE.NEIGHBOR", "X", ""])},
    optional={"priority": st.integers(-2, 6), "description": st.text(max_size=50),
              "occurred_at": st.datetimes(timezones=st.sampled_from([None, __import__("datetime").UTC])).map(
                  lambda d: d.isoformat()),
              "reporter_phone": st.text(max_size=15), "external_id": st.text(max_size=70),
              "source": st.sampled_from(["api", "camera", "bogus"])},
)  # fmt: skip


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(payload=in_city | json_values, key=st.none() | st.text(max_size=140))
def test_no_5xx_for_hypothesis_incident_bodies(fuzz_app, payload, key):
    headers = dict(fuzz_app.fuzz_headers)
    if key is not None:
        try:
            key.encode("latin-1")
        except UnicodeEncodeError:
            key = key.encode("unicode_escape").decode("ascii")
        headers["Idempotency-Key"] = key.replace("\n", " ").replace("\r", " ")
    r = fuzz_app.server.test_client().post("/api/v1/incidents", json=payload, headers=headers)
    assert r.status_code in (200, 201, 400, 409, 422), (payload, r.get_data(as_text=True)[:300])
    doc = r.get_json()
    if r.status_code >= 400:
        assert doc["errors"] and all(e["field"] and e["message"] for e in doc["errors"])


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/incidents?grid_id=2147483648",
        "/api/v1/incidents/2147483648",
        "/open311/v2/requests/2147483648.json",
        "/open311/v2/requests/99999999999.json",
    ],
)
def test_ids_past_the_database_integer_are_4xx_not_a_database_error(fuzz_app, path):
    """PostgreSQL INTEGER is 32-bit: grid_id=2**31 once answered 503 from the database."""
    r = fuzz_app.server.test_client().get(path, headers=fuzz_app.fuzz_headers)
    assert 400 <= r.status_code < 500, (r.status_code, r.get_data(as_text=True)[:300])
