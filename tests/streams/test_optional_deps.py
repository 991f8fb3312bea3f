"""Optional packages (Ray, Redis, gunicorn) stop their configured feature with a clear message.

Each is imported only when its feature is configured; when it is missing the deployment must
refuse to start with a message that says how to install it, never fall back quietly (video
in-process while cluster mode was asked for, events in one process while workers share
Redis). The packages are hidden by putting ``None`` in ``sys.modules``, which makes
``import`` raise ImportError and ``find_spec`` answer None, as on a machine without them.
"""

from __future__ import annotations

import sys

import pytest

from layers.settings import SettingsError, load_settings


@pytest.fixture
def without(monkeypatch):
    def hide(*modules: str) -> None:
        for name in modules:
            for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
                monkeypatch.delitem(sys.modules, loaded)
            monkeypatch.setitem(sys.modules, name, None)

    return hide


def test_cluster_mode_without_ray_is_refused_at_settings(without):
    without("ray")
    with pytest.raises(SettingsError) as err:
        load_settings({"GRIDSIGHT_RAY_ADDRESS": "local"})
    assert str(err.value) == (
        "GRIDSIGHT_RAY_ADDRESS=local (cluster mode) needs the ray package, which is not "
        "installed: pip install -r requirements-cluster.txt"
    )
    assert load_settings({}).video.ray_address is None  # in-process mode needs no Ray


def test_cluster_objects_without_ray_fail_closed_with_the_install_hint(without):
    from streams import cluster

    without("ray")
    with pytest.raises(cluster.ClusterError, match="requirements-cluster.txt"):
        cluster.RedactionCluster("local", dict, deployment_key="k")
    with pytest.raises(cluster.ClusterError, match="needs Ray, which is not installed"):
        cluster.connect("local")


def test_redis_events_without_redis_are_refused(without):
    from streams.events import EventBusError, make_event_bus

    without("redis")
    with pytest.raises(SettingsError, match="^GRIDSIGHT_REDIS_URL .*needs the redis package"):
        load_settings({"GRIDSIGHT_REDIS_URL": "redis://127.0.0.1:6379/0"})
    with pytest.raises(EventBusError, match="redis package is missing"):
        make_event_bus("redis://127.0.0.1:6379/0")


def test_several_workers_without_gunicorn_are_refused(without):
    without("gunicorn")
    env = {"GRIDSIGHT_WORKERS": "3", "GRIDSIGHT_REDIS_URL": "redis://127.0.0.1:6379/0"}
    with pytest.raises(SettingsError, match="GRIDSIGHT_WORKERS=3 .*needs the gunicorn package"):
        load_settings(env)
