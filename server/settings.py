"""Typed settings read from the environment, validated once at boot.

The defaults give the embedded run: a SQLite file, one process, no other service.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

DEV_SECRET_PLACEHOLDER = "dev-insecure-change-me"


class SettingsError(ValueError):
    """The environment holds a value the server cannot run with."""


def _int(env: dict[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(env: dict[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _bool(env: dict[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be a boolean (true/false), got {raw!r}")


def _origins(raw: str | None) -> tuple[str, ...]:
    if not raw:
        return ()
    return tuple(o.strip().rstrip("/") for o in raw.replace("\n", ",").split(",") if o.strip())


def _networks(env: dict[str, str], name: str) -> tuple[str, ...]:
    """Addresses or CIDRs, comma or space separated; each checked, kept as written."""
    raw = env.get(name) or ""
    items = tuple(i for i in raw.replace(",", " ").split() if i)
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise SettingsError(
                f"{name} must list IP addresses or CIDRs (like 10.0.0.0/8), got {item!r}"
            ) from None
    return items


def _choice(
    env: dict[str, str], name: str, default: str, choices: tuple[str, ...], upper: bool = False
) -> str:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    value = raw.upper() if upper else raw.lower()
    if value not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return value


def normalize_database_url(url: str) -> str:
    """Accept the plain URLs operators paste and pick the async drivers we ship."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    if url.startswith("sqlite://"):
        url = "sqlite+aiosqlite://" + url[len("sqlite://") :]
    if not (url.startswith("postgresql+psycopg://") or url.startswith("sqlite+aiosqlite://")):
        raise SettingsError(
            "DATABASE_URL must be a PostgreSQL (postgresql://...) or SQLite (sqlite:///...) URL"
        )
    return url


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str | None = None
    secret_key: str = DEV_SECRET_PLACEHOLDER
    environment: str = "development"
    data_dir: Path = Path("chatd-data")
    allowed_origins: tuple[str, ...] = ()
    cookie_secure: bool = False
    session_ttl_seconds: int = 14 * 24 * 3600
    # send_message limit per end user (organization + external_id), shared across processes
    # via Redis.
    rate_limit_messages: int = 20
    rate_limit_window_seconds: float = 10.0
    login_attempts: int = 10
    login_window_seconds: float = 300.0
    typing_timeout_seconds: float = 5.0
    max_content_length: int = 10_000
    max_rich_media_bytes: int = 16_384
    # The largest Engine.IO packet (websocket frame or polling POST body) a client may send.
    # Sized from the worst-case send_message (docs/operations.md, "Frame size"): content at
    # max_content_length escaped by python-socketio's client (12 bytes per astral character)
    # plus rich_media at max_rich_media_bytes escaped (3x) plus the envelope, rounded up.
    max_http_buffer_size: int = 192 * 1024
    presence_ttl_seconds: float = 15.0
    # Connections to Redis for rate limits and presence. Callers beyond this wait for a free
    # connection instead of failing (redis-py's default pool refuses above 100).
    redis_max_connections: int = 32
    gc_freeze: bool = True
    gc_gen0_threshold: int = 50_000
    demo_on_empty: bool = True
    # Uploads (widget visitors and agents): the largest file, and where files are kept
    # (default: <data_dir>/uploads).
    upload_max_bytes: int = 10 * 1024 * 1024
    upload_dir: Path | None = None
    # Socket access limits
    # Every socket's grant (an agent's session, a visitor's embed token) is re-checked this
    # often; a logout or a token revocation cuts open sockets on every process within it.
    access_sweep_seconds: float = 1.0
    # send_message per socket, whatever external_id it names: rotating ids on one connection
    # does not escape the per-end-user limit above.
    socket_rate_limit_messages: int = 30
    socket_rate_limit_window_seconds: float = 10.0
    # REST abuse limits on the widget's public endpoints, per sliding window (0 turns one
    # off). The address is request.remote: the TCP peer, or the client's address forwarded
    # by a proxy listed in trusted_proxies (without one, every visitor shares the proxy's).
    # New conversations (POST /chat-widget/conversations and the widget page); a visitor who
    # already has one is not counted.
    new_conversations_per_address: int = 10
    new_conversations_per_token: int = 600
    new_conversations_window_seconds: float = 60.0
    # Integration API (/api/v1/): requests per API key per sliding window (0 turns it off).
    api_requests_per_key: int = 600
    api_requests_window_seconds: float = 60.0
    # Visitor uploads (POST /chat-widget/uploads); per visitor = per conversation.
    visitor_uploads_per_address: int = 60
    visitor_uploads_per_visitor: int = 20
    visitor_uploads_window_seconds: float = 60.0
    # Outbox (durable subscribers, server/outbox.py): how often each process looks for rows
    # written by other processes or left by a crash (a commit in the process wakes it at
    # once), rows claimed per subscriber at a time, how long a claim holds (a delivery is
    # cancelled and retried after 90% of it), attempts before a row is dead, the retry
    # backoff (exponential from base, capped, jittered), and how long delivered rows are kept
    # (0: deleted when delivered).
    outbox_poll_seconds: float = 1.0
    outbox_batch_size: int = 500
    outbox_lease_seconds: float = 30.0
    outbox_max_attempts: int = 10
    outbox_backoff_base_seconds: float = 1.0
    outbox_backoff_cap_seconds: float = 300.0
    outbox_retention_seconds: float = 0.0
    # Webhooks (server/webhook_sender.py): one request's timeout, attempts of a delivery and
    # their backoff (the defaults spread 16 attempts over about a day), how long an endpoint
    # may fail without a success before it is disabled, requests in flight per endpoint, how
    # long the delivery log keeps delivered rows, and whether endpoints may be private,
    # loopback or link-local addresses (off: such URLs are refused, SSRF).
    webhook_timeout_seconds: float = 10.0
    webhook_max_attempts: int = 16
    webhook_backoff_base_seconds: float = 10.0
    webhook_backoff_cap_seconds: float = 21_600.0
    webhook_disable_after_seconds: float = 86_400.0
    webhook_in_flight_per_endpoint: int = 10
    webhook_retention_seconds: float = 7 * 86_400.0
    webhook_allow_private_targets: bool = False
    # Push notifications (server/services/push.py): earlier secret keys that still open
    # sealed push credentials after CHATD_SECRET_KEY changed (docs/push.md, "Rotating the
    # secret key"); where the providers are (tests and private gateways point them
    # elsewhere; APNs empty: Apple's host of each credential's environment); a CA bundle to
    # trust in addition to the system's; one request's timeout.
    previous_secret_keys: tuple[str, ...] = ()
    push_fcm_api_base: str = "https://fcm.googleapis.com"
    push_apns_base_url: str = ""
    push_ca_file: str = ""
    push_timeout_seconds: float = 10.0
    # Operations: proxies, transport timings, metrics and logs (docs/operations.md).
    # Peers (addresses or CIDRs) whose X-Forwarded-For/-Proto/-Host and X-Request-Id are
    # believed; empty: none (the TCP peer is the client).
    trusted_proxies: tuple[str, ...] = ()
    ping_interval_seconds: int = 25
    ping_timeout_seconds: int = 20
    # Bearer token for GET /metrics; empty: open (see docs/operations.md).
    metrics_token: str = ""
    log_format: str = "text"
    log_level: str = "INFO"
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def uploads_path(self) -> Path:
        return self.upload_dir if self.upload_dir is not None else self.data_dir / "uploads"

    def with_overrides(self, **changes) -> Settings:
        return replace(self, **changes)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        environment = env.get("CHATD_ENV", "development").strip().lower()
        if environment not in ("development", "production"):
            raise SettingsError("CHATD_ENV must be 'development' or 'production'")
        data_dir = Path(env.get("CHATD_DATA_DIR", "chatd-data"))
        database_url = (
            env.get("DATABASE_URL") or f"sqlite+aiosqlite:///{data_dir / 'chatd.sqlite3'}"
        )
        secret = env.get("CHATD_SECRET_KEY") or DEV_SECRET_PLACEHOLDER
        if environment == "production" and (secret == DEV_SECRET_PLACEHOLDER or len(secret) < 32):
            raise SettingsError(
                "CHATD_SECRET_KEY must be set to a random value of at least 32 characters "
                "when CHATD_ENV=production"
            )
        settings = cls(
            database_url=normalize_database_url(database_url),
            redis_url=env.get("REDIS_URL") or None,
            secret_key=secret,
            environment=environment,
            data_dir=data_dir,
            allowed_origins=_origins(env.get("CHATD_ALLOWED_ORIGINS")),
            cookie_secure=_bool(env, "CHATD_COOKIE_SECURE", environment == "production"),
            session_ttl_seconds=_int(env, "CHATD_SESSION_TTL_SECONDS", 14 * 24 * 3600, 60),
            rate_limit_messages=_int(env, "CHATD_RATE_LIMIT_MESSAGES", 20, 1),
            rate_limit_window_seconds=_float(env, "CHATD_RATE_LIMIT_WINDOW_SECONDS", 10.0, 0.1),
            login_attempts=_int(env, "CHATD_LOGIN_ATTEMPTS", 10, 1),
            login_window_seconds=_float(env, "CHATD_LOGIN_WINDOW_SECONDS", 300.0, 1.0),
            typing_timeout_seconds=_float(env, "CHATD_TYPING_TIMEOUT_SECONDS", 5.0, 0.1),
            max_content_length=_int(env, "CHATD_MAX_CONTENT_LENGTH", 10_000, 1),
            max_rich_media_bytes=_int(env, "CHATD_MAX_RICH_MEDIA_BYTES", 16_384, 256),
            max_http_buffer_size=_int(env, "CHATD_MAX_HTTP_BUFFER_SIZE", 192 * 1024, 4096),
            presence_ttl_seconds=_float(env, "CHATD_PRESENCE_TTL_SECONDS", 15.0, 1.0),
            redis_max_connections=_int(env, "CHATD_REDIS_MAX_CONNECTIONS", 32, 1),
            gc_freeze=_bool(env, "CHATD_GC_FREEZE", True),
            gc_gen0_threshold=_int(env, "CHATD_GC_GEN0_THRESHOLD", 50_000, 100),
            demo_on_empty=_bool(env, "CHATD_DEMO", environment == "development"),
            upload_max_bytes=_int(env, "CHATD_UPLOAD_MAX_BYTES", 10 * 1024 * 1024, 1),
            upload_dir=Path(env["CHATD_UPLOAD_DIR"]) if env.get("CHATD_UPLOAD_DIR") else None,
            # Socket access limits
            access_sweep_seconds=_float(env, "CHATD_ACCESS_SWEEP_SECONDS", 1.0, 0.1),
            socket_rate_limit_messages=_int(env, "CHATD_SOCKET_RATE_LIMIT_MESSAGES", 30, 1),
            socket_rate_limit_window_seconds=_float(
                env, "CHATD_SOCKET_RATE_LIMIT_WINDOW_SECONDS", 10.0, 0.1
            ),
            # REST abuse limits
            new_conversations_per_address=_int(env, "CHATD_NEW_CONVERSATIONS_PER_ADDRESS", 10),
            new_conversations_per_token=_int(env, "CHATD_NEW_CONVERSATIONS_PER_TOKEN", 600),
            new_conversations_window_seconds=_float(
                env, "CHATD_NEW_CONVERSATIONS_WINDOW_SECONDS", 60.0, 1.0
            ),
            api_requests_per_key=_int(env, "CHATD_API_REQUESTS_PER_KEY", 600),
            api_requests_window_seconds=_float(env, "CHATD_API_REQUESTS_WINDOW_SECONDS", 60.0, 1.0),
            visitor_uploads_per_address=_int(env, "CHATD_VISITOR_UPLOADS_PER_ADDRESS", 60),
            visitor_uploads_per_visitor=_int(env, "CHATD_VISITOR_UPLOADS_PER_VISITOR", 20),
            visitor_uploads_window_seconds=_float(
                env, "CHATD_VISITOR_UPLOADS_WINDOW_SECONDS", 60.0, 1.0
            ),
            # Outbox
            outbox_poll_seconds=_float(env, "CHATD_OUTBOX_POLL_SECONDS", 1.0, 0.05),
            outbox_batch_size=_int(env, "CHATD_OUTBOX_BATCH_SIZE", 500, 1),
            outbox_lease_seconds=_float(env, "CHATD_OUTBOX_LEASE_SECONDS", 30.0, 1.0),
            outbox_max_attempts=_int(env, "CHATD_OUTBOX_MAX_ATTEMPTS", 10, 1),
            outbox_backoff_base_seconds=_float(env, "CHATD_OUTBOX_BACKOFF_BASE_SECONDS", 1.0, 0.01),
            outbox_backoff_cap_seconds=_float(env, "CHATD_OUTBOX_BACKOFF_CAP_SECONDS", 300.0, 0.01),
            outbox_retention_seconds=_float(env, "CHATD_OUTBOX_RETENTION_SECONDS", 0.0, 0.0),
            # Webhooks
            webhook_timeout_seconds=_float(env, "CHATD_WEBHOOK_TIMEOUT_SECONDS", 10.0, 0.1),
            webhook_max_attempts=_int(env, "CHATD_WEBHOOK_MAX_ATTEMPTS", 16, 1),
            webhook_backoff_base_seconds=_float(
                env, "CHATD_WEBHOOK_BACKOFF_BASE_SECONDS", 10.0, 0.01
            ),
            webhook_backoff_cap_seconds=_float(
                env, "CHATD_WEBHOOK_BACKOFF_CAP_SECONDS", 21_600.0, 0.01
            ),
            webhook_disable_after_seconds=_float(
                env, "CHATD_WEBHOOK_DISABLE_AFTER_SECONDS", 86_400.0, 1.0
            ),
            webhook_in_flight_per_endpoint=_int(env, "CHATD_WEBHOOK_IN_FLIGHT_PER_ENDPOINT", 10, 1),
            webhook_retention_seconds=_float(
                env, "CHATD_WEBHOOK_RETENTION_SECONDS", 7 * 86_400.0, 1.0
            ),
            webhook_allow_private_targets=_bool(env, "CHATD_WEBHOOK_ALLOW_PRIVATE_TARGETS", False),
            previous_secret_keys=tuple(
                k.strip() for k in env.get("CHATD_PREVIOUS_SECRET_KEYS", "").split(",") if k.strip()
            ),
            push_fcm_api_base=env.get("CHATD_PUSH_FCM_API_BASE", "https://fcm.googleapis.com")
            .strip()
            .rstrip("/"),
            push_apns_base_url=env.get("CHATD_PUSH_APNS_BASE_URL", "").strip().rstrip("/"),
            push_ca_file=env.get("CHATD_PUSH_CA_FILE", "").strip(),
            push_timeout_seconds=_float(env, "CHATD_PUSH_TIMEOUT_SECONDS", 10.0, 0.1),
            # Operations
            trusted_proxies=_networks(env, "CHATD_TRUSTED_PROXIES"),
            ping_interval_seconds=_int(env, "CHATD_PING_INTERVAL_SECONDS", 25, 1),
            ping_timeout_seconds=_int(env, "CHATD_PING_TIMEOUT_SECONDS", 20, 1),
            metrics_token=env.get("CHATD_METRICS_TOKEN", "").strip(),
            log_format=_choice(env, "CHATD_LOG_FORMAT", "text", ("text", "json")),
            log_level=_choice(
                env, "CHATD_LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR"), upper=True
            ),
        )
        if settings.outbox_backoff_cap_seconds < settings.outbox_backoff_base_seconds:
            raise SettingsError(
                "CHATD_OUTBOX_BACKOFF_CAP_SECONDS must be at least "
                "CHATD_OUTBOX_BACKOFF_BASE_SECONDS"
            )
        if settings.webhook_backoff_cap_seconds < settings.webhook_backoff_base_seconds:
            raise SettingsError(
                "CHATD_WEBHOOK_BACKOFF_CAP_SECONDS must be at least "
                "CHATD_WEBHOOK_BACKOFF_BASE_SECONDS"
            )
        return settings
