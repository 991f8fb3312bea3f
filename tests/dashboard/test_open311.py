"""Open311 GeoReport v2 as an existing client speaks it: form-encoded POST with api_key."""

from __future__ import annotations

import pytest

from bench.incident_city import grid_center
from dashboard.app import create_app
from layers.settings import load_settings
from tests.dbs import new_db
from tests.helpers_auth import bearer


@pytest.fixture(scope="module")
def app(db_backend, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("o311")
    db = new_db(tmp / "gs.sqlite", db_backend)
    settings = load_settings(db_url=db.url, data_dir=tmp, seed_on_start=False, simulator=False)
    return create_app(settings, db=db, start_background=False)


@pytest.fixture(scope="module")
def api_key(app):
    return bearer(app, "intake")["Authorization"].removeprefix("Bearer ")


def test_services_list_is_public_and_follows_the_spec(app):
    r = app.server.test_client().get("/open311/v2/services.json")
    assert r.status_code == 200
    services = r.get_json()
    env = next(s for s in services if s["service_code"] == "ENV")
    assert set(env) >= {"service_code", "service_name", "description", "metadata", "type",
                        "keywords", "group"}  # fmt: skip
    assert env["metadata"] is False and env["type"] == "realtime"


def test_post_form_with_api_key_then_read_it_back(app, api_key):
    lon, lat = grid_center(3, 1)
    c = app.server.test_client()
    r = c.post("/open311/v2/requests.json", data={
        "api_key": api_key, "service_code": "ENV", "lat": str(lat), "long": str(lon),
        "description": "路灯不亮", "first_name": "三", "last_name": "张", "phone": "13812345678",
        "email": "z@example.org"})  # fmt: skip
    assert r.status_code == 201, r.get_data(as_text=True)
    (ack,) = r.get_json()
    rid = ack["service_request_id"]
    got = c.get(f"/open311/v2/requests/{rid}.json?api_key={api_key}")
    assert got.status_code == 200
    (req,) = got.get_json()
    assert req["service_code"] == "ENV" and req["status"] == "open"
    assert req["lat"] == pytest.approx(lat) and req["long"] == pytest.approx(lon)
    assert req["agency_responsible"] == "社区3中心"
    assert "138" not in str(req) and "张" not in str(req)  # reporter never returned
    listing = c.get(f"/open311/v2/requests.json?api_key={api_key}&status=open&service_code=ENV")
    assert rid in [x["service_request_id"] for x in listing.get_json()]
    closed = c.get(f"/open311/v2/requests.json?api_key={api_key}&status=closed")
    assert rid not in [x["service_request_id"] for x in closed.get_json()]


@pytest.mark.parametrize(
    ("form", "needle", "code"),
    [
        ({"lat": "25.01", "long": "102.71"}, "service_code", 400),
        ({"service_code": "ENV"}, "lat/long", 400),
        ({"service_code": "ENV", "lat": "x", "long": "102.71"}, "lat/long", 400),
        ({"service_code": "NOPE", "lat": "25.01", "long": "102.71"}, "service_code", 400),
        ({"service_code": "ENV", "lat": "25.01", "long": "99.0"}, "lat/long", 400),
        ({"service_code": "ENV", "lat": "25.01", "long": "102.71", "color": "r"}, "color", 400),
    ],
)
def test_bad_posts_get_spec_errors(app, api_key, form, needle, code):
    r = app.server.test_client().post(
        "/open311/v2/requests.json", data={"api_key": api_key, **form}
    )
    assert r.status_code == code
    (err,) = r.get_json()
    assert err["code"] == code and needle in err["description"]


def test_missing_or_wrong_api_key_is_refused(app):
    c = app.server.test_client()
    data = {"service_code": "ENV", "lat": "25.01", "long": "102.71"}
    assert c.post("/open311/v2/requests.json", data=data).status_code in (400, 401)
    r = c.post("/open311/v2/requests.json", data={**data, "api_key": "gst_wrong"})
    assert r.status_code == 401
    assert c.get("/open311/v2/requests.json").status_code == 401
    assert c.get("/open311/v2/requests/abc.json?api_key=x").status_code == 401


def test_unknown_request_is_404(app, api_key):
    c = app.server.test_client()
    r = c.get(f"/open311/v2/requests/999999.json?api_key={api_key}")
    assert r.status_code == 404 and r.get_json()[0]["code"] == 404
    r = c.get(f"/open311/v2/requests.json?api_key={api_key}&start_date=yesterday")
    assert r.status_code == 400 and "start_date" in r.get_json()[0]["description"]
