"""The deployment's settings: one frozen tree read from ``GRIDSIGHT_*`` environment variables.

``load_settings()`` is the one loader: the web app (``python -m dashboard``) and the CLIs
(``python -m layers``, its ``migrate`` and ``migrate-db`` commands, and Alembic's environment)
call it; ``python -m streams`` reads its ``video`` section with
``streams.settings.load_video_settings``. The tree::

    Settings
    ├── data_dir   the deployment's folder: SQLite file, session secret, snapshots
    ├── db         database URL (default: gridsight.sqlite under data_dir)
    ├── web        server, workers, sign-in, cookies, proxies, base map, language
    ├── events     the live event bus (in-process, or a Redis stream)
    ├── video      streams.settings.VideoSettings: footage, view caps, stalls, Ray cluster
    ├── privacy    privacy floor, two-person unmasking, audit key, retention
    └── demo       the demo city seeded on first start and the incident simulator

Each field's alias is its environment variable and its description the line in README.md's
settings table (``tests/dashboard/test_settings.py`` checks both). Callbacks never read the
environment: the app factory receives a ``Settings`` and puts it on the app context.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo

from layers.streams_seam import (
    PrivacyFloor,
    SettingsError,
    SettingsSection,
    VideoSettings,
    describe_errors,
    json_value,
    require_installed,
    setting,
)

__all__ = [
    "DB_FILE_NAME",
    "DEFAULT_DATA_DIR",
    "DbSettings",
    "DemoSettings",
    "EventsSettings",
    "PrivacySettings",
    "Settings",
    "SettingsError",
    "VideoSettings",
    "WebSettings",
    "default_db_url",
    "iter_settings",
    "load_settings",
]

DEFAULT_DATA_DIR = Path("data")
DB_FILE_NAME = "gridsight.sqlite"
FloorTarget = Literal["faces", "plates", "persons"]


def default_db_url(data_dir: Path | str = DEFAULT_DATA_DIR) -> str:
    """Return the embedded default database: ``gridsight.sqlite`` in ``data_dir`` (made absolute).

    Absolute, so a process that changes its working directory, or a redaction worker started
    elsewhere, opens the same file.
    """
    return f"sqlite:///{(Path(data_dir).expanduser() / DB_FILE_NAME).resolve()}"


class DbSettings(SettingsSection):
    """The db section: which database the deployment keeps its layers, cases and audit in."""

    url: str = setting(
        "",
        "DB_URL",
        "SQLAlchemy database URL (embedded default: a SQLite file under GRIDSIGHT_DATA_DIR).",
    )

    @field_validator("url")
    @classmethod
    def _url_has_scheme(cls, v: str) -> str:
        if not v:
            return ""  # unset: Settings puts the default SQLite file under data_dir
        if "://" not in v:
            raise ValueError(
                "GRIDSIGHT_DB_URL must be a URL such as sqlite:////srv/gridsight/gridsight.sqlite "
                "or postgresql+psycopg://user@host/db"
            )
        return v

    def is_shared(self) -> bool:
        """Return False for an in-memory SQLite database (one per process), True otherwise."""
        url = self.url
        in_memory = ":memory:" in url or url.rstrip("/") in ("sqlite:", "sqlite")
        return not (url.startswith("sqlite") and in_memory)


class WebSettings(SettingsSection):
    """The web section: server and workers, sign-in and sessions, cookies, base map, language."""

    host: str = setting("127.0.0.1", "HOST", "Address the web server listens on.")
    port: int = setting(8050, "PORT", "Port the web server listens on.", ge=1, le=65535)
    workers: int = setting(
        1,
        "WORKERS",
        "Web worker processes: 1 runs waitress, more run gunicorn and need Redis.",
        ge=1,
        le=64,
    )
    threads: int = setting(
        32,
        "THREADS",
        "Web server threads per worker process for pages, API, login and /healthz "
        "(with several workers, gunicorn's threads serve streams too).",
        ge=4,
    )
    stream_threads: int = setting(
        64,
        "STREAM_THREADS",
        "One worker (waitress): threads of the separate pool that serves video, "
        "snapshots and event streams, so streams never take the page threads.",
        ge=4,
        le=1024,
    )
    leader_retry_s: float = setting(
        15.0,
        "LEADER_RETRY_S",
        "Seconds between a worker's attempts to take over the background services.",
        ge=0.2,
        le=300,
    )
    language: Literal["zh", "en"] = setting("zh", "LANGUAGE", "Default UI language.")
    secret_key: str | None = setting(
        None,
        "SECRET_KEY",
        "Session-signing secret; generated once into data_dir/secret_key if unset.",
    )
    session_minutes: int = setting(
        480, "SESSION_MINUTES", "Minutes of inactivity after which a login session expires.", ge=5
    )
    login_limit_per_address: str = setting(
        "30/minute",
        "LOGIN_LIMIT_PER_ADDRESS",
        "Failed sign-ins, and attempts for names that are not active accounts, from one "
        "client address (form and HTTP Basic; limits notation such as 30/minute); over it "
        "only active accounts are still checked there, so people behind one NAT get in.",
    )
    login_limit_per_client: str = setting(
        "5/15minutes",
        "LOGIN_LIMIT_PER_CLIENT",
        "Failed sign-ins per account name from one client (its browser, else its "
        "address) before that pair waits; other clients are not affected.",
    )
    login_limit_per_account: str = setting(
        "20/15minutes",
        "LOGIN_LIMIT_PER_ACCOUNT",
        "Failed sign-ins per account name from browsers that never signed in to it "
        "(a browser that did is not held back by this limit).",
    )
    login_concurrency: int = setting(
        2,
        "LOGIN_CONCURRENCY",
        "Password (argon2) verifications run at once per worker process; more "
        "wait briefly or are told to retry, so logins cannot take the API's threads.",
        ge=1,
        le=64,
    )
    cookie_secure: Literal["auto", "always", "never"] = setting(
        "auto",
        "COOKIE_SECURE",
        "Secure flag of the session cookies: auto = when the request came over "
        "HTTPS (directly or via a trusted proxy's X-Forwarded-Proto).",
    )
    trusted_proxies: str = setting(
        "",
        "TRUSTED_PROXIES",
        "Comma-separated addresses or networks of reverse proxies whose "
        "X-Forwarded-For/-Proto/-Host are believed; none by default.",
    )
    basemap_url: str | None = setting(
        None,
        "BASEMAP_URL",
        "XYZ tile URL template of an intranet base map ({z}/{x}/{y}); none by default.",
    )
    basemap_crs: Literal["wgs84", "gcj02"] = setting(
        "wgs84",
        "BASEMAP_CRS",
        "Datum of the base map tiles; gcj02 shifts our WGS-84 data to match.",
    )
    mbtiles_path: Path | None = setting(
        None, "MBTILES_PATH", "A local MBTiles file served by the app as the offline base map."
    )

    @field_validator("login_limit_per_address", "login_limit_per_client",
                     "login_limit_per_account")  # fmt: skip
    @classmethod
    def _rate_limit(cls, v: str, info) -> str:
        import limits

        try:
            limits.parse(v)
        except ValueError:
            name = cls.model_fields[info.field_name].alias
            raise ValueError(
                f"{name}={v!r} is not a rate limit; write e.g. 30/minute or 5/15minutes"
            ) from None
        return v

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, v: str) -> str:
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


class EventsSettings(SettingsSection):
    """The events section: where live events travel between workers (in-process or Redis)."""

    redis_url: str | None = setting(
        None,
        "REDIS_URL",
        "Redis URL for live events across workers and machines; none = in-process.",
    )
    redis_stream: str = setting(
        "gridsight:events",
        "REDIS_STREAM",
        "Redis stream key of the live events (one per deployment sharing a Redis).",
        pattern=r"^[A-Za-z0-9_.:\-]{1,128}$",
    )
    max_streams: int = setting(
        12,
        "EVENTS_MAX_STREAMS",
        "Open live event streams (/api/v1/events) per web process; one more answers 429 "
        "(with several workers at most a quarter of GRIDSIGHT_THREADS).",
        ge=1,
    )
    max_streams_per_user: int = setting(
        4,
        "EVENTS_MAX_STREAMS_PER_USER",
        "Open live event streams per user or API token and web process; one more answers 429.",
        ge=1,
    )

    @field_validator("redis_url")
    @classmethod
    def _redis_url_scheme(cls, v: str | None) -> str | None:
        if not v:
            return None
        if not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(
                "GRIDSIGHT_REDIS_URL must be a Redis URL such as redis://127.0.0.1:6379/0 "
                "(or rediss://, unix://); leave it unset for the in-process event bus"
            )
        require_installed("redis", "GRIDSIGHT_REDIS_URL (live events through Redis)")
        return v


class PrivacySettings(SettingsSection):
    """The privacy section: the redaction floor, unmasking approval, audit key, retention."""

    floor_targets: frozenset[FloorTarget] = setting(
        frozenset({"faces", "persons", "plates"}),
        "PRIVACY_FLOOR_TARGETS",
        "Privacy floor: targets no redaction rule may drop (JSON list); a rule "
        "without one is refused, a stored one is served raised.",
    )
    floor_detectors: dict[FloorTarget, list[str]] | None = setting(
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
    unmask_requires_second_approver: bool = setting(
        False,
        "UNMASK_REQUIRES_SECOND_APPROVER",
        "Unmask grants, and rule changes that lower protection, take effect only "
        "after a second privacy officer approves.",
    )
    audit_key_file: Path | None = setting(
        None,
        "AUDIT_KEY_FILE",
        "HMAC key file sealing the audit chain (made mode 0600 on first start); "
        "unset = beside the data folder, named after it (data -> data.audit-key).",
    )
    personal_data_retention_days: int = setting(
        180,
        "PERSONAL_DATA_RETENTION_DAYS",
        "Days after which reporter names/phones and snapshots are purged; 0 = never.",
        ge=0,
    )

    @field_validator("floor_targets", "floor_detectors", "floor_limits", mode="before")
    @classmethod
    def _json_from_env(cls, v: Any) -> Any:
        return json_value(v)

    @model_validator(mode="after")
    def _floor_is_valid(self) -> PrivacySettings:
        try:
            self.floor()
        except ValidationError as exc:
            raise ValueError(
                "GRIDSIGHT_PRIVACY_FLOOR_TARGETS / GRIDSIGHT_PRIVACY_FLOOR_DETECTORS / "
                "GRIDSIGHT_PRIVACY_FLOOR_LIMITS: "
                f"{exc.errors()[0]['msg']}"
            ) from exc
        return self

    def floor(self) -> PrivacyFloor:
        """Return the deployment's privacy floor (the least redaction any rule may ask for)."""
        return PrivacyFloor(
            targets=self.floor_targets, detectors=self.floor_detectors, limits=self.floor_limits
        )


class DemoSettings(SettingsSection):
    """The demo section: the city seeded into an empty database and the live incident feed."""

    seed_on_start: bool = setting(
        True,
        "SEED_ON_START",
        "Seed the demo city on first start when the database has no grids.",
    )
    seed_scale: Literal["tiny", "demo", "city"] = setting(
        "demo", "SEED_SCALE", "Size of the demo city seeded on first start."
    )
    seed: int = setting(42, "SEED", "Random seed of the demo city (same seed, same city).")
    simulator: bool = setting(
        True,
        "SIMULATOR",
        "Run the live incident simulator (adds incidents every few seconds).",
    )
    simulator_interval_s: float = setting(
        4.0, "SIMULATOR_INTERVAL_S", "Seconds between two simulated incidents.", gt=0
    )


#: The sections of the tree, by attribute name.
SECTIONS: dict[str, type[SettingsSection]] = {
    "db": DbSettings,
    "web": WebSettings,
    "events": EventsSettings,
    "video": VideoSettings,
    "privacy": PrivacySettings,
    "demo": DemoSettings,
}


class Settings(BaseModel):
    """The whole configuration of one deployment: its data folder and six frozen sections."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_by_name=True, validate_by_alias=True
    )

    data_dir: Path = Field(
        DEFAULT_DATA_DIR,
        alias="GRIDSIGHT_DATA_DIR",
        description="Folder for the SQLite file, the session secret and snapshots.",
    )
    db: DbSettings = Field(default_factory=DbSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    events: EventsSettings = Field(default_factory=EventsSettings)
    video: VideoSettings = Field(default_factory=VideoSettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    demo: DemoSettings = Field(default_factory=DemoSettings)

    @model_validator(mode="before")
    @classmethod
    def _database_under_data_dir(cls, data: Any) -> Any:
        """Put the default SQLite file under ``data_dir`` when no database URL is set."""
        if not isinstance(data, dict):
            return data
        db = data.get("db")
        if isinstance(db, DbSettings):
            if db.url:
                return data
        elif isinstance(db, Mapping):
            if db.get("url") or db.get("GRIDSIGHT_DB_URL"):
                return data
        elif db is not None:
            return data  # not a section: let validation name it
        data_dir = data.get("data_dir", data.get("GRIDSIGHT_DATA_DIR")) or DEFAULT_DATA_DIR
        url = default_db_url(data_dir)
        data = dict(data)
        if isinstance(db, DbSettings):
            data["db"] = db.model_copy(update={"url": url})
        else:
            given = {k: v for k, v in (db or {}).items() if k not in ("url", "GRIDSIGHT_DB_URL")}
            data["db"] = {**given, "url": url}
        return data

    @model_validator(mode="after")
    def _sections_agree(self) -> Settings:
        pool = self.web.stream_threads
        if self.video.max_streams > pool - 4:
            raise ValueError(
                f"GRIDSIGHT_VIDEO_MAX_STREAMS={self.video.max_streams} must be at most "
                f"GRIDSIGHT_STREAM_THREADS - 4 ({pool - 4}): refusals (429), snapshots and "
                "event streams need threads too"
            )
        if self.events.max_streams > pool - 4:
            raise ValueError(
                f"GRIDSIGHT_EVENTS_MAX_STREAMS={self.events.max_streams} must be at most "
                f"GRIDSIGHT_STREAM_THREADS - 4 ({pool - 4}): refusals (429) and snapshots need "
                "threads too"
            )
        workers = self.web.workers
        if workers > 1 and not self.events.redis_url:
            raise ValueError(
                f"GRIDSIGHT_WORKERS={workers} needs GRIDSIGHT_REDIS_URL (e.g. "
                "redis://127.0.0.1:6379/0): live events must reach every worker; set it, or "
                "run one worker"
            )
        if workers > 1:
            require_installed("gunicorn", f"GRIDSIGHT_WORKERS={workers} (several web workers)")
        if workers > 1 and not self.db.is_shared():
            raise ValueError(
                f"GRIDSIGHT_WORKERS={workers} needs a database the workers share; an in-memory "
                "SQLite database exists once per process: use a SQLite file or PostgreSQL"
            )
        return self

    def audit_key_path(self) -> Path:
        """Return where the audit chain's key lives (see ``layers.services.audit_key``)."""
        from layers.services.audit_key import default_key_path

        key_file = self.privacy.audit_key_file
        return Path(key_file).expanduser() if key_file else default_key_path(self.data_dir)


def iter_settings() -> Iterator[tuple[str, str | None, FieldInfo]]:
    """Yield (environment variable, section name or None for the top level, field) of every setting."""
    yield "GRIDSIGHT_DATA_DIR", None, Settings.model_fields["data_dir"]
    for section, model in SECTIONS.items():
        for field in model.model_fields.values():
            yield field.alias, section, field


def _flat_index() -> dict[str, tuple[str | None, str]]:
    """Return {flat name: (section or None, environment variable)}; flat name = env minus prefix."""
    return {
        env.removeprefix("GRIDSIGHT_").lower(): (section, env)
        for env, section, _f in iter_settings()
    }


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Return the deployment's settings from ``environ`` (default ``os.environ``).

    ``overrides`` take precedence and use the variables' names without the prefix, in lower
    case (``db_url=...``, ``video_max_streams=...``, ``data_dir=...``). Raises
    ``SettingsError`` with one line per refused value, naming its variable.
    """
    env = os.environ if environ is None else environ
    index = _flat_index()
    unknown = sorted(set(overrides) - set(index))
    if unknown:
        raise SettingsError(
            "; ".join(f"{name}: unknown setting (extra keyword)" for name in unknown)
        )
    data: dict[str, Any] = {section: model.env_values(env) for section, model in SECTIONS.items()}
    if "GRIDSIGHT_DATA_DIR" in env:
        data["GRIDSIGHT_DATA_DIR"] = env["GRIDSIGHT_DATA_DIR"]
    for name, value in overrides.items():
        section, var = index[name]
        if section is None:
            data[var] = value
        else:
            data[section][var] = value
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise SettingsError(describe_errors(exc)) from None
