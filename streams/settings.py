"""The ``video`` section and the privacy floor of the deployment's settings, and what every
section is made of.

A section is a frozen, validated model whose fields carry their environment variable as their
alias (``GRIDSIGHT_*``): ``SettingsSection.from_env(os.environ)`` reads one section, and
``layers.settings.load_settings`` reads the whole tree (db, web, events, video, privacy,
demo) for the web app and the CLIs. The video section and the floor part of the privacy
section live here because ``streams`` may import nothing of ``layers``; ``python -m streams``
reads them on their own (``load_video_settings``, ``load_privacy_floor``).
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from streams.floor import FloorError, PrivacyFloor
from streams.rules import Target

ENV_PREFIX = "GRIDSIGHT_"


class SettingsError(ValueError):
    """A setting has a value GridSight cannot run with; the message names the variable(s)."""


def setting(default: Any, env: str, description: str, **constraints: Any) -> Any:
    """Return a settings field read from ``GRIDSIGHT_<env>``, documented by ``description``."""
    return Field(default, alias=ENV_PREFIX + env, description=description, **constraints)


class SettingsSection(BaseModel):
    """One frozen section of the settings tree; each field's alias is its GRIDSIGHT_* variable."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_by_name=True, validate_by_alias=True
    )

    @classmethod
    def env_names(cls) -> dict[str, str]:
        """Return {field name: environment variable} of this section."""
        return {name: f.alias for name, f in cls.model_fields.items() if f.alias}

    @classmethod
    def env_values(cls, environ: Mapping[str, str]) -> dict[str, str]:
        """Return {environment variable: value} of this section's variables set in ``environ``."""
        return {env: environ[env] for env in cls.env_names().values() if env in environ}

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **overrides: Any) -> Self:
        """Return this section from ``environ``, keyword overrides (field names) taking precedence.

        Raises ``SettingsError`` naming each variable whose value is refused.
        """
        try:
            return cls.model_validate({**cls.env_values(environ), **overrides})
        except ValidationError as exc:
            raise SettingsError(describe_errors(exc)) from None


def describe_errors(exc: ValidationError) -> str:
    """Return one line per refused setting: ``GRIDSIGHT_X: why`` (the variable, not the path)."""
    lines = []
    for err in exc.errors():
        names = [str(p) for p in err["loc"]]
        env = next((n for n in reversed(names) if n.startswith(ENV_PREFIX)), None)
        where = env or (ENV_PREFIX + names[-1].upper() if names else "settings")
        msg = str(err["msg"]).removeprefix("Value error, ")
        lines.append(msg if msg.startswith(ENV_PREFIX) else f"{where}: {msg}")
    return "\n".join(dict.fromkeys(lines))


def require_installed(module: str, because: str) -> None:
    """Raise a ValueError saying how to install ``module`` if it is not importable.

    For the optional dependencies of a configured feature (Ray for cluster mode, Redis for
    the shared event bus, gunicorn for several workers): the deployment stops at start with
    this message instead of failing later, or quietly running without the feature.
    """
    if importlib.util.find_spec(module) is None:
        raise ValueError(
            f"{because} needs the {module} package, which is not installed: "
            "pip install -r requirements-cluster.txt"
        )


def json_value(value: Any) -> Any:
    """Return ``value`` decoded from JSON when it comes as text (an environment variable)."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not JSON ({exc.msg})") from None
    return value


def known_timezone(name: str, env: str) -> str:
    """Return ``name`` if it is an IANA time zone, else raise a ValueError naming ``env``."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"{env}: unknown time zone {name!r}; use an IANA name such as Asia/Shanghai"
        ) from exc
    return name


class PrivacyFloorSettings(SettingsSection):
    """The privacy floor's settings: the least redaction any rule may ask for, deployment-wide
    (targets, detector types, limits on how weakly they may detect).

    Part of the privacy section of the tree (``layers.settings.PrivacySettings`` adds the rest);
    ``python -m streams`` reads it alone with ``load_privacy_floor``.
    """

    floor_targets: frozenset[Target] = setting(
        frozenset({"faces", "persons", "plates"}),
        "PRIVACY_FLOOR_TARGETS",
        "Privacy floor: targets no redaction rule may drop (JSON list); a rule "
        "without one is refused, a stored one is served raised.",
    )
    floor_detectors: dict[Target, list[str]] | None = setting(
        None,
        "PRIVACY_FLOOR_DETECTORS",
        "Privacy floor: detector types allowed per target (JSON object, e.g. "
        '{"faces": ["centerface"]}); unset = the default rule\'s detectors (persons: hog too).',
    )
    floor_limits: dict[str, Any] | None = setting(
        None,
        "PRIVACY_FLOOR_LIMITS",
        "Privacy floor: how weakly a rule may detect (JSON object, e.g. "
        '{"centerface.threshold": 0.3, "min_face_px": 16, "method": "pixelate"}); unset keys = '
        "the default rule's score thresholds and smallest sizes, any method, strength, margin.",
    )

    @field_validator("floor_targets", "floor_detectors", "floor_limits", mode="before")
    @classmethod
    def _json_from_env(cls, v: Any) -> Any:
        return json_value(v)

    @model_validator(mode="after")
    def _floor_is_valid(self) -> Self:
        try:
            self.floor()
        except ValidationError as exc:
            raise ValueError(
                "GRIDSIGHT_PRIVACY_FLOOR_TARGETS / GRIDSIGHT_PRIVACY_FLOOR_DETECTORS / "
                f"GRIDSIGHT_PRIVACY_FLOOR_LIMITS: {exc.errors()[0]['msg']}"
            ) from exc
        return self

    def floor(self) -> PrivacyFloor:
        """Return the deployment's privacy floor (the least redaction any rule may ask for)."""
        return PrivacyFloor(
            targets=self.floor_targets, detectors=self.floor_detectors, limits=self.floor_limits
        )


def load_privacy_floor(environ: Mapping[str, str] | None = None) -> PrivacyFloor:
    """Return the privacy floor from ``environ`` (default ``os.environ``; built-in if unset).

    Raises ``FloorError`` with one line naming the variable whose value is refused.
    """
    import os

    try:
        return PrivacyFloorSettings.from_env(os.environ if environ is None else environ).floor()
    except SettingsError as exc:
        raise FloorError("; ".join(str(exc).splitlines())) from None


class VideoSettings(SettingsSection):
    """The video section: demo footage, caps on open views, stall detection and cluster mode."""

    sample_video: Path | None = setting(
        None, "SAMPLE_VIDEO", "Video file the demo cameras loop (file:// sources) when set."
    )
    max_streams: int = setting(
        48,
        "VIDEO_MAX_STREAMS",
        "Open MJPEG views per web process; one more answers 429 (with several "
        "workers at most half of GRIDSIGHT_THREADS).",
        ge=1,
    )
    max_streams_per_user: int = setting(
        6,
        "VIDEO_MAX_STREAMS_PER_USER",
        "Open MJPEG views per user and web process; one more answers 429.",
        ge=1,
    )
    stall_after_s: float = setting(
        5.0,
        "VIDEO_STALL_AFTER_S",
        "Seconds without a fresh redacted frame after which a camera is 'stalled' "
        "(or stale/offline) and viewers see the placeholder instead of the last frame.",
        gt=0,
        le=300,
    )
    timezone: str = setting(
        "Asia/Shanghai",
        "TIMEZONE",
        "City time zone (IANA name) of times drawn on video, e.g. the stall placeholder.",
    )
    ray_address: str | None = setting(
        None,
        "RAY_ADDRESS",
        "Ray cluster running the video redaction workers (local, auto, host:port, "
        "ray://host:10001); none = in-process pipeline.",
    )
    ray_workers: int = setting(
        2,
        "RAY_WORKERS",
        "Redaction worker processes in the Ray cluster; camera c runs in worker c mod N.",
        ge=1,
        le=1024,
    )
    ray_worker_cpus: int = setting(
        1,
        "RAY_WORKER_CPUS",
        "Cluster mode: CPUs Ray reserves for each redaction worker (and cores it is "
        "held to); 2-4 for workers hosting several 25 fps 1080p feeds.",
        ge=1,
        le=64,
    )
    ray_bind_cpus: bool = setting(
        True,
        "RAY_BIND_CPUS",
        "Cluster mode: hold each redaction worker to the cores Ray reserves for "
        "it, so N workers use N x GRIDSIGHT_RAY_WORKER_CPUS cores; false lets its threads "
        "spread over all cores.",
    )
    ray_idle_s: float = setting(
        30.0,
        "RAY_IDLE_S",
        "Cluster mode: seconds a camera keeps running in its worker after its last viewer.",
        ge=0,
    )
    ray_namespace: str = setting(
        "gridsight",
        "RAY_NAMESPACE",
        "Ray namespace of the redaction workers (one per deployment sharing a cluster).",
        min_length=1,
    )

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, v: str) -> str:
        return known_timezone(v, ENV_PREFIX + "TIMEZONE")

    @field_validator("ray_address")
    @classmethod
    def _blank_is_none(cls, v: str | None) -> str | None:
        return v or None

    @model_validator(mode="after")
    def _cluster_mode_has_ray(self) -> VideoSettings:
        if self.ray_address:
            require_installed("ray", f"GRIDSIGHT_RAY_ADDRESS={self.ray_address} (cluster mode)")
        return self

    def hub_settings(self):
        """Return the ``streams.hub.HubSettings`` of this deployment's live streams."""
        from streams.camera import HubSettings

        return HubSettings(stall_after_s=self.stall_after_s, timezone=self.timezone)


def load_video_settings(
    environ: Mapping[str, str] | None = None, **overrides: Any
) -> VideoSettings:
    """Return the video section from ``environ`` (default ``os.environ``) and overrides."""
    import os

    return VideoSettings.from_env(os.environ if environ is None else environ, **overrides)
