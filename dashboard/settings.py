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
    """The whole configuration of one deployment, as ``load_settings`` reads it."""

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
    login_limit_per_address: str = Field(
        "30/minute",
        description="Failed sign-ins, and attempts for names that are not active accounts, "
        "from one client address (form and HTTP Basic; limits notation such as 30/minute); over "
        "it only active accounts are still checked there, so people behind one NAT get in.",
    )
    login_limit_per_client: str = Field(
        "5/15minutes",
        description="Failed sign-ins per account name from one client (its browser, else its "
        "address) before that pair waits; other clients are not affected.",
    )
    login_limit_per_account: str = Field(
        "20/15minutes",
        description="Failed sign-ins per account name from browsers that never signed in to it "
        "(a browser that did is not held back by this limit).",
    )
    login_concurrency: int = Field(
        2,
        ge=1,
        le=64,
        description="Password (argon2) verifications run at once per worker process; more "
        "wait briefly or are told to retry, so logins cannot take the API's threads.",
    )
    cookie_secure: Literal["auto", "always", "never"] = Field(
        "auto",
        description="Secure flag of the session cookies: auto = when the request came over "
        "HTTPS (directly or via a trusted proxy's X-Forwarded-Proto).",
    )
    trusted_proxies: str = Field(
        "",
        description="Comma-separated addresses or networks of reverse proxies whose "
        "X-Forwarded-For/-Proto/-Host are believed; none by default.",
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
        '{"faces": ["centerface"]}); unset = the default rule\'s detectors (persons: hog too).',
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
        description="Web server threads per worker process for pages, API, login and /healthz "
        "(with several workers, gunicorn's threads serve streams too).",
    )
    stream_threads: int = Field(
        64,
        ge=4,
        le=1024,
        description="One worker (waitress): threads of the separate pool that serves video, "
        "snapshots and event streams, so streams never take the page threads.",
    )
    video_max_streams: int = Field(
        48,
        ge=1,
        description="Open MJPEG views per web process; one more answers 429 (with several "
        "workers at most half of GRIDSIGHT_THREADS).",
    )
    video_max_streams_per_user: int = Field(
        6, ge=1, description="Open MJPEG views per user and web process; one more answers 429."
    )
    events_max_streams: int = Field(
        12,
        ge=1,
        description="Open live event streams (/api/v1/events) per web process; one more "
        "answers 429 (with several workers at most a quarter of GRIDSIGHT_THREADS).",
    )
    events_max_streams_per_user: int = Field(
        4,
        ge=1,
        description="Open live event streams per user or API token and web process; one more "
        "answers 429.",
    )
    video_stall_after_s: float = Field(
        5.0,
        gt=0,
        le=300,
        description="Seconds without a fresh redacted frame after which a camera is 'stalled' "
        "(or stale/offline) and viewers see the placeholder instead of the last frame.",
    )
    timezone: str = Field(
        "Asia/Shanghai",
        description="City time zone (IANA name) of times drawn on video, e.g. the stall placeholder.",
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

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"GRIDSIGHT_TIMEZONE: unknown time zone {v!r}; use an IANA name such as "
                "Asia/Shanghai"
            ) from exc
        return v

    @field_validator("video_max_streams")
    @classmethod
    def _streams_below_pool(cls, v: int, info: ValidationInfo) -> int:
        pool = info.data.get("stream_threads")
        if pool is not None and v > pool - 4:
            raise ValueError(
                f"GRIDSIGHT_VIDEO_MAX_STREAMS={v} must be at most GRIDSIGHT_STREAM_THREADS - 4 "
                f"({pool - 4}): refusals (429), snapshots and event streams need threads too"
            )
        return v

    @field_validator("events_max_streams")
    @classmethod
    def _events_below_pool(cls, v: int, info: ValidationInfo) -> int:
        pool = info.data.get("stream_threads")
        if pool is not None and v > pool - 4:
            raise ValueError(
                f"GRIDSIGHT_EVENTS_MAX_STREAMS={v} must be at most GRIDSIGHT_STREAM_THREADS - 4 "
                f"({pool - 4}): refusals (429) and snapshots need threads too"
            )
        return v

    @field_validator("login_limit_per_address", "login_limit_per_client",
                     "login_limit_per_account")  # fmt: skip
    @classmethod
    def _rate_limit(cls, v: str, info: ValidationInfo) -> str:
        import limits

        try:
            limits.parse(v)
        except ValueError:
            name = f"GRIDSIGHT_{info.field_name.upper()}"
            raise ValueError(
                f"{name}={v!r} is not a rate limit; write e.g. 30/minute or 5/15minutes"
            ) from None
        return v

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, v: str) -> str:
        import ipaddress

        for part in (p.strip() for p in v.split(",")):
            if not part:
                continue
            try:
                ipaddress.ip_network(part, strict=False)
            except ValueError:
                raise ValueError(
                    f"GRIDSIGHT_TRUSTED_PROXIES has {part!r}, which is not an address or "
                    "network; write e.g. 127.0.0.1,10.0.0.0/8"
                ) from None
        return v

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
