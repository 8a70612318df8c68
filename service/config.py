"""Service settings read from the environment."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import msgspec
import platformdirs

# The maximum stall or heartbeat timeout: one week, because a job silent for longer
# is lost.
TIMEOUT_MAX_SECONDS = 7 * 24 * 3600
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


class ConfigError(Exception):
    """An environment variable contains a value the service cannot use."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the service reads from its environment, with defaults."""

    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    api_tokens: tuple[str, ...] = ()
    worker_tokens: tuple[str, ...] = ()
    backend_url: str | None = None
    backend_token: str | None = None
    data_dir: Path = Path(platformdirs.user_data_dir("ingestion-tracker"))
    max_body_bytes: int = 1024 * 1024
    retry_backoff_seconds: float = 1.0
    retry_backoff_max_seconds: float = 300.0
    retry_max_tries: int = 8
    retry_max_file_bytes: int = 100 * 1024 * 1024
    backend_timeout_seconds: float = 30.0
    dispatch_interval_seconds: float = 1.0
    db_pool_size: int = 10
    stall_timeout_seconds: int = 60
    heartbeat_timeout_seconds: int = 600
    sweep_interval_seconds: float = 5.0
    stream_keepalive_seconds: float = 15.0
    stream_buffer_events: int = 1000
    cors_origins: tuple[str, ...] = ()
    log_level: str = "info"
    log_format: str = "auto"

    @property
    def auth_enabled(self) -> bool:
        """Whether requests must carry a bearer token."""
        return bool(self.api_tokens or self.worker_tokens)


def _split(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _number(
    env: Mapping[str, str], name: str, kind: type[int] | type[float]
) -> int | float | None:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
    if value <= 0:
        raise ConfigError(f"{name}={raw!r} must be greater than 0")
    return value


_NUMBERS: dict[str, tuple[str, type[int] | type[float]]] = {
    "TRACKER_PORT": ("port", int),
    "TRACKER_MAX_BODY_BYTES": ("max_body_bytes", int),
    "TRACKER_RETRY_BACKOFF_SECONDS": ("retry_backoff_seconds", float),
    "TRACKER_RETRY_BACKOFF_MAX_SECONDS": ("retry_backoff_max_seconds", float),
    "TRACKER_RETRY_MAX_TRIES": ("retry_max_tries", int),
    "TRACKER_RETRY_MAX_FILE_BYTES": ("retry_max_file_bytes", int),
    "TRACKER_BACKEND_TIMEOUT_SECONDS": ("backend_timeout_seconds", float),
    "TRACKER_DISPATCH_INTERVAL_SECONDS": ("dispatch_interval_seconds", float),
    "TRACKER_DB_POOL_SIZE": ("db_pool_size", int),
    "TRACKER_STALL_TIMEOUT_SECONDS": ("stall_timeout_seconds", int),
    "TRACKER_HEARTBEAT_TIMEOUT_SECONDS": ("heartbeat_timeout_seconds", int),
    "TRACKER_SWEEP_INTERVAL_SECONDS": ("sweep_interval_seconds", float),
    "TRACKER_STREAM_KEEPALIVE_SECONDS": ("stream_keepalive_seconds", float),
    "TRACKER_STREAM_BUFFER_EVENTS": ("stream_buffer_events", int),
}

_TEXTS: dict[str, str] = {
    "DATABASE_URL": "database_url",
    "TRACKER_HOST": "host",
    "TRACKER_BACKEND_URL": "backend_url",
    "TRACKER_BACKEND_TOKEN": "backend_token",
    "TRACKER_LOG_LEVEL": "log_level",
    "TRACKER_LOG_FORMAT": "log_format",
}

_LISTS: dict[str, str] = {
    "TRACKER_API_TOKENS": "api_tokens",
    "TRACKER_WORKER_TOKENS": "worker_tokens",
    "TRACKER_CORS_ORIGINS": "cors_origins",
}


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build settings from environment variables; raise ConfigError on a bad value."""
    env = os.environ if env is None else env
    values: dict[str, object] = {}
    for name, field in _TEXTS.items():
        if env.get(name, "").strip():
            values[field] = env[name].strip()
    for name, field in _LISTS.items():
        values[field] = _split(env.get(name, ""))
    for name, (field, kind) in _NUMBERS.items():
        number = _number(env, name, kind)
        if number is not None:
            values[field] = number
    if env.get("TRACKER_DATA_DIR", "").strip():
        values["data_dir"] = Path(env["TRACKER_DATA_DIR"]).expanduser()

    settings = Settings(**values)  # type: ignore[arg-type]
    validate(settings)
    return settings


def validate(settings: Settings) -> None:
    """Raise ConfigError for settings the service must not start with."""
    if settings.database_url is not None and not settings.database_url.startswith(
        ("postgresql://", "postgres://")
    ):
        raise ConfigError("DATABASE_URL must be a postgresql:// or postgres:// URL")
    if settings.backend_url is not None and not settings.backend_url.startswith(
        ("http://", "https://")
    ):
        raise ConfigError("TRACKER_BACKEND_URL must be an http:// or https:// URL")
    if (
        settings.backend_url is not None
        and "@" in urlsplit(settings.backend_url).netloc
    ):
        raise ConfigError(
            "TRACKER_BACKEND_URL must not contain credentials, because error messages "
            "show it; put the token in TRACKER_BACKEND_TOKEN"
        )
    if settings.log_level.lower() not in {"debug", "info", "warning", "error"}:
        raise ConfigError(
            "TRACKER_LOG_LEVEL must be one of: debug, info, warning, error"
        )
    if settings.log_format not in {"auto", "json", "console"}:
        raise ConfigError("TRACKER_LOG_FORMAT must be one of: auto, json, console")
    for name, seconds in (
        ("TRACKER_STALL_TIMEOUT_SECONDS", settings.stall_timeout_seconds),
        ("TRACKER_HEARTBEAT_TIMEOUT_SECONDS", settings.heartbeat_timeout_seconds),
    ):
        if seconds > TIMEOUT_MAX_SECONDS:
            raise ConfigError(
                f"{name}={seconds} is above the maximum of {TIMEOUT_MAX_SECONDS} "
                "(one week)"
            )
    if settings.heartbeat_timeout_seconds < settings.stall_timeout_seconds:
        raise ConfigError(
            "TRACKER_HEARTBEAT_TIMEOUT_SECONDS must be at least "
            "TRACKER_STALL_TIMEOUT_SECONDS: a job is flagged stalled before it fails"
        )
    for name, entry in _token_entries(settings):
        if entry.startswith(":") or entry.endswith(":"):
            raise ConfigError(
                f"{name} has an entry {_masked(entry)} with an empty name or token; "
                "write each entry as TOKEN or NAME:TOKEN"
            )
    if settings.auth_enabled and not (settings.api_tokens and settings.worker_tokens):
        missing = (
            "TRACKER_API_TOKENS" if not settings.api_tokens else "TRACKER_WORKER_TOKENS"
        )
        raise ConfigError(
            f"{missing} is empty while the other token list is set; set both, "
            "or neither to run without authentication on a loopback address"
        )
    if not settings.auth_enabled and not is_loopback(settings.host):
        raise ConfigError(
            f"refusing to serve on {settings.host} without authentication; set "
            "TRACKER_API_TOKENS and TRACKER_WORKER_TOKENS, or bind to 127.0.0.1"
        )


def _token_entries(settings: Settings) -> list[tuple[str, str]]:
    return [("TRACKER_API_TOKENS", entry) for entry in settings.api_tokens] + [
        ("TRACKER_WORKER_TOKENS", entry) for entry in settings.worker_tokens
    ]


def _masked(entry: str) -> str:
    """Show a token entry's name, never its secret."""
    name, separator, _ = entry.partition(":")
    return f"'{name}:…'" if separator and name else "'…'"


def split_token(entry: str) -> tuple[str | None, str]:
    """Split a ``NAME:TOKEN`` entry into name and token; a bare TOKEN has no name."""
    name, separator, token = entry.partition(":")
    if not separator:
        return None, entry
    return name, token


def is_loopback(host: str) -> bool:
    """Tell whether a bind address only accepts connections from this machine."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
