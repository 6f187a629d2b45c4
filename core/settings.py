"""All configuration, read from `CAMPAIGNS_*` environment variables (README "Settings")."""

import json
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import to_jsonable_python
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.constants import DEFAULT_TASK_QUEUE

DEV_SECRET = "dev-only-secret-change-me-0123456789"
DEV_SMS_TOKEN = "dev-sms-token"
# The only environments allowed to run on the published defaults, spelled exactly: anything else,
# including a typo ("Production", "prod") or no value at all, is treated as a real deployment.
DEVELOPMENT_ENVIRONMENTS = frozenset({"development", "test"})
# HMAC-SHA256 keys shorter than its 32-byte output are guessable well below the hash's strength.
MIN_SECRET_BYTES = 32


class AccountRateLimit(BaseModel):
    """What one provider account accepts (README "Rate limits"): messages per second and per UTC
    day, each unset for none. Every worker draws on the same budget (activities.send.throttle)."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)

    per_second: float | None = Field(None, gt=0, le=1_000_000, alias="perSecond")
    per_day: int | None = Field(None, ge=1, alias="perDay")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CAMPAIGNS_", extra="ignore")

    environment: str = Field(
        "production",
        description="`development` or `test` (exactly) allow the published development secrets; "
        "any other value, or none, is a real deployment",
    )
    # Unset means: the embedded Postgres (pgserver) of the dev stack / test suite.
    database_url: str | None = None
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    task_queue: str = DEFAULT_TASK_QUEUE

    jwt_secret: str = DEV_SECRET
    jwt_algorithm: str = "HS256"
    jwt_public_key: str | None = None  # RS256 alternative to the shared secret

    public_url: str = "http://127.0.0.1:8000"
    tracking_secret: str = DEV_SECRET
    webhook_secret: str = DEV_SECRET
    # Seals credentials and private keys at rest (core.secrets). Rotation: put the new key here and
    # the old one in CAMPAIGNS_SECRET_KEYS_PREVIOUS (comma-separated) until every value is resealed.
    secret_key: str = Field(
        DEV_SECRET, description="seals provider credentials and DKIM keys at rest (at least 32 bytes)"
    )
    secret_keys_previous: str = Field(
        "", description="earlier secret keys, comma-separated, still opening values sealed under them"
    )

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    # SMTP connections per worker: its email slots. Each message costs the ledger one commit per
    # slot (claim with the previous answer), so more slots mean larger group commits; 16 kept the
    # throughput of the old wave design on 2 cores (docs/performance-log.md).
    smtp_pool_size: int = Field(16, ge=1, le=64)
    email_from: str = "Campaigns <campaigns@example.com>"

    sms_url: str = "http://127.0.0.1:8025/messages"
    sms_token: str = DEV_SMS_TOKEN
    sms_from: str = "+15550000000"

    # Tenant workspace (docs/tenants-and-providers.md). The platform's own DKIM key signs the mail
    # of tenants without an identity of their own; unset (the development default): unsigned.
    dkim_domain: str | None = Field(None, description="domain of the platform's DKIM key (`d=`)")
    dkim_selector: str | None = Field(None, description="selector of the platform's DKIM key (`s=`)")
    dkim_private_key: str | None = Field(None, description="the platform's DKIM private key, PEM")
    # Tenants' SMTP and SMS hosts may not point into private networks unless this allows it.
    provider_hosts_allow_private: bool = Field(
        False, description="allow tenants' provider hosts on private, loopback or link-local addresses"
    )
    dns_nameservers: str = Field(
        "", description="DNS servers for DKIM checks, `host[:port]`, comma-separated; empty: the system's"
    )

    # Sending (README "Sending pipeline"): recipients per batch activity, messages per render job,
    # and the provider slots of one worker. A message is claimed in the ledger only as a slot
    # (an SMTP connection, an SMS request) is about to take it, at most one ahead per slot, so a
    # crashed worker leaves at most 2 x slots of each channel without an answer.
    batch_size: int = Field(2000, ge=1, le=10_000)
    # A large run's pages grow up to this many recipients (activities/planning.py, README "Pages
    # of a large run"): each page costs a fixed share of machine CPU however many it holds. Never
    # below `batch_size`.
    large_batch_size: int = Field(10_000, ge=1, le=10_000)
    # How long one attempt of a page may send (README "Pages of a large run"): then it stops
    # starting messages, returns, and the workflow sends the rest of the page as a new activity.
    # A page's activity times out after 15 minutes (workflows/options.py, BATCH_TIMEOUT), which a
    # throttled page would otherwise outlast; the bound leaves a minute for the last answers.
    page_time_budget: float = Field(600.0, gt=0, le=840)
    # On SIGTERM a worker stops polling and gives its running activities this long before it
    # cancels them (worker.py). A send page that has not finished by `SHUTDOWN_WIND_DOWN` before
    # the end stops itself as a pause would (activities/send/page.py), so no message it holds is
    # cancelled on the wire. Give the process manager a longer stop timeout than this.
    shutdown_grace_seconds: float = Field(30.0, ge=1, le=3600)
    # Messages rendered per render-pool job (the round trip to a render process is paid once per
    # job); rendered messages wait for a free slot, unclaimed.
    send_concurrency: int = Field(32, ge=1, le=256)
    # SMS requests one worker keeps in flight (each on its own kept-alive connection).
    sms_in_flight: int = Field(16, ge=1, le=256)
    # The SMS provider deduplicates on Idempotency-Key for good: a crashed page's in-flight SMS
    # are posted again with the same key instead of ending UNKNOWN (README "Delivery guarantees").
    sms_idempotent: bool = False
    # The SMS quiet hours of a tenant that set no policy, "HH:MM-HH:MM" in the recipient's zone
    # (README "Sending policies"); empty: none. Email has none by default.
    sms_quiet_hours_default: str = Field(
        "21:00-08:00", pattern=r"^(([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d)?$"
    )
    # Pages of one campaign in flight at once, each its own activity (so several workers can
    # share a big campaign); 1 sends page after page.
    pages_in_flight: int = Field(2, ge=1, le=32)
    snapshot_chunk_size: int = Field(10_000, ge=100, le=1_000_000)
    # Batches per workflow run before continue-as-new keeps history bounded.
    batches_per_run: int = Field(200, ge=1, le=2_000)
    # TRIGGERED campaigns: how long one drain activity waits for queued events, and how often it
    # looks (the latency from POST /events to the send).
    trigger_poll_seconds: float = Field(15.0, gt=0, le=300)
    trigger_poll_interval: float = Field(0.2, gt=0, le=10)
    trigger_poll_max_interval: float = Field(2.0, gt=0, le=60)
    # Activities one worker runs at once. Each ACTIVE TRIGGERED campaign holds one while it waits
    # for events (an idle asyncio task, no connection), so leave room above the number of those.
    max_concurrent_activities: int = Field(200, ge=4, le=10_000)

    max_body_bytes: int = 1024 * 1024

    # Database time limits (db.engine): no statement of one tenant's request may hold a connection,
    # or the locks others wait for, for long. A statement cut by them answers 503 with Retry-After.
    # The worker's are generous: its snapshot and ledger statements are long by nature. 0: no limit.
    db_statement_timeout_ms: int = Field(
        15_000, ge=0, description="longest statement of the API, milliseconds (over: 503)"
    )
    db_lock_timeout_ms: int = Field(5_000, ge=0, description="longest lock wait of the API, milliseconds")
    # The API's reads (db.read_pool, docs/read-path.md): a fixed number of connections per process;
    # requests beyond it wait their turn instead of opening (and closing) one more each.
    api_read_pool_size: int = Field(
        10, ge=1, le=200, description="read connections per API process (each of two read pools)"
    )
    worker_db_statement_timeout_ms: int = Field(
        600_000, ge=0, description="longest statement of a worker, milliseconds (over: the activity retries)"
    )
    worker_db_lock_timeout_ms: int = Field(60_000, ge=0, description="longest lock wait of a worker, ms")

    # Rendering tenant templates (providers.render_pool, README "Security"): a pool of worker
    # processes per API or worker process, so a slow or greedy template costs its own tenant a
    # failed message, never the others their latency.
    render_processes: int = Field(
        2, ge=1, le=64, description="template render processes per API or worker process"
    )
    render_timeout_seconds: float = Field(
        2.0, gt=0, le=60, description="wall-clock limit of one render or template check (over: 422 or FAILED)"
    )
    render_memory_mb: int = Field(
        512, ge=32, le=65_536, description="memory a render process may take beyond its start (422 or FAILED)"
    )
    render_quarantine_seconds: float = Field(
        300.0, ge=0, le=86_400, description="a template over the time or memory limit fails at once this long"
    )
    sms_max_segments: int = Field(
        10, ge=1, le=255, description="segments a rendered SMS may take; more: FAILED `TOO_LONG`, preview 422"
    )

    # Operations (README "Operations"): logs, worker metrics, tracing.
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR")
    log_format: str = Field("json", description="`json` (one object per line) or `text`")
    worker_metrics_port: int | None = Field(
        None, ge=0, le=65535, description="port of the worker's Prometheus `/metrics`; unset or 0: off"
    )
    otlp_endpoint: str | None = Field(
        None, description="OTLP/HTTP collector, e.g. `http://otel:4318`; unset: tracing off"
    )

    # Tokens and the API's edge (README "Security"): one tenant cannot slow, break or fool the
    # service for the others.
    jwt_max_age: int = Field(
        86_400, ge=60, le=366 * 86_400, description="longest token lifetime accepted, seconds (`exp - iat`)"
    )
    jwt_issuer: str | None = Field(None, description="when set, tokens must carry this `iss`")
    jwt_audience: str | None = Field(None, description="when set, tokens must carry this `aud`")
    max_header_bytes: int = Field(
        16 * 1024, ge=1024, le=1024 * 1024, description="largest request head, all headers together (431)"
    )
    max_header_value_bytes: int = Field(
        8 * 1024, ge=256, le=1024 * 1024, description="largest single request header (431)"
    )
    rate_limit_tenant_per_second: float = Field(
        200.0, ge=0, description="requests per second per tenant and API process; 0: no limit (429)"
    )
    rate_limit_tenant_burst: int = Field(400, ge=1, description="requests a tenant may send at once")
    rate_limit_ip_per_second: float = Field(
        400.0,
        ge=0,
        description="requests per second per client address and API process, for requests without a "
        "valid token; 0: no limit",
    )
    rate_limit_ip_burst: int = Field(800, ge=1, description="requests a client address may send at once")
    rate_limit_tracking_ip_per_second: float = Field(
        1000.0, ge=0, description="tracking requests (`/t/...`) per second per client address; 0: no limit"
    )
    rate_limit_tracking_ip_burst: int = Field(2000, ge=1, description="tracking requests at once per address")
    tracking_dedupe_seconds: int = Field(
        10, ge=0, le=86_400, description="a link the same client repeats within this many seconds counts once"
    )
    rate_limits: dict[str, AccountRateLimit] = Field(
        {},
        description='provider accounts\' limits, JSON: `{"email": {"perSecond": 14, "perDay": 50000}, '
        '"sms": {"perSecond": 1}}`, held across all workers and shared fairly by the tenants sending; '
        "an account not named: unlimited",
    )

    # Outbound webhooks to tenants' systems (docs/outbound-webhooks.md).
    webhook_dead_letter_days: float = Field(
        3.0, gt=0, le=90, description="an endpoint failing this long dead-letters what it cannot deliver"
    )
    webhook_allow_http: bool = Field(False, description="accept http:// endpoint URLs (https only when off)")
    webhook_allow_private: bool = Field(
        False, description="accept endpoints on private, loopback or link-local addresses (SSRF guard off)"
    )
    webhook_poll_seconds: float = Field(
        5.0, gt=0, le=300, description="an idle endpoint looks for events this often"
    )
    webhook_retry_max_seconds: float = Field(
        300.0, ge=1, le=86_400, description="longest wait between two attempts at a failing endpoint"
    )
    webhook_batch_size: int = Field(100, ge=1, le=1000, description="events per webhook request, at most")
    webhook_timeout_seconds: float = Field(10.0, gt=0, le=60, description="a receiver's time to answer")

    @field_validator("rate_limits")
    @classmethod
    def _account_names(cls, value: dict[str, AccountRateLimit]) -> dict[str, AccountRateLimit]:
        for name in value:
            if not 1 <= len(name) <= 100 or name != name.strip():
                raise ValueError("an account name is 1 to 100 characters, without spaces around it")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError("log_level must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level

    @field_validator("log_format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value.strip().lower() not in ("json", "text"):
            raise ValueError("log_format must be json or text")
        return value.strip().lower()

    @model_validator(mode="after")
    def _refuse_unsafe_secrets(self) -> "Settings":
        """Outside an explicit development or test environment, refuse secrets anyone could know.

        The defaults are printed in this repository: a deployment that kept one would accept tokens,
        tracking links or webhooks forged by anyone, for any tenant. Short keys fall to guessing.
        All problems are reported at once, by setting name, never with the value.
        """
        if self.environment in DEVELOPMENT_ENVIRONMENTS:
            return self
        problems = unsafe_secrets(self)
        if problems:
            raise ValueError(
                f"CAMPAIGNS_ENVIRONMENT is {self.environment!r} (unset means production), not "
                "`development` or `test`, so " + "; ".join(problems)
            )
        return self


def unsafe_secrets(settings: Settings) -> list[str]:
    """What a real deployment may not run with, one phrase per setting (the secrets, and a
    database URL: without one the embedded development Postgres would start).

    The JWT secret is exempt when tokens are verified with `CAMPAIGNS_JWT_PUBLIC_KEY` (it is then
    unused). The SMS token is the provider's credential, whose length is theirs to choose: only its
    published default (and an empty one) are refused.
    """
    ours = ["tracking_secret", "webhook_secret", "secret_key"]
    if not settings.jwt_public_key:
        ours.insert(0, "jwt_secret")
    problems: list[str] = []
    for name in ours:
        value: str = getattr(settings, name)
        if value == DEV_SECRET:
            problems.append(f"CAMPAIGNS_{name.upper()} must be set: its default is public")
        elif len(value.encode()) < MIN_SECRET_BYTES:
            problems.append(f"CAMPAIGNS_{name.upper()} must be at least {MIN_SECRET_BYTES} bytes long")
    if settings.sms_token in (DEV_SMS_TOKEN, ""):
        problems.append("CAMPAIGNS_SMS_TOKEN must be set: its default is public")
    if not settings.database_url:
        # Unset means the embedded Postgres of the dev stack and the tests (db.engine): a real
        # deployment that silently started a private, empty database would lose everything.
        problems.append(
            "CAMPAIGNS_DATABASE_URL must be set: the embedded Postgres is for development and test"
        )
    return problems


def settings_error_line(err: ValidationError) -> str:
    """A refusal in one line naming the settings, without the input pydantic would print beside it
    (the whole environment it read, secrets included)."""
    parts = []
    for item in err.errors():
        message = str(item.get("msg", "invalid")).removeprefix("Value error, ")
        loc = item.get("loc", ())
        parts.append(f"CAMPAIGNS_{str(loc[0]).upper()}: {message}" if loc else message)
    return "; ".join(parts)


def as_environment(settings: Settings) -> dict[str, str]:
    """The `CAMPAIGNS_*` variables that read back as `settings`, every field included.

    Tests and benchmarks start workers and API processes of their own (to kill them, or to measure
    them apart); a child given a hand-picked list silently runs with defaults for whatever the list
    forgot. Lists and maps are JSON, as pydantic-settings reads them; unset fields are left out.
    """
    env: dict[str, str] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str | int | float):
            text = str(value)
        else:
            text = json.dumps(to_jsonable_python(value, by_alias=True, exclude_none=True))
        env[f"CAMPAIGNS_{name.upper()}"] = text
    return env


@lru_cache
def get_settings() -> Settings:
    """The process's settings, or an exit with one readable line (`SystemExit`) when they are unsafe
    or invalid: starting anyway, or with a traceback an operator has to dig through, is worse."""
    try:
        return Settings()
    except ValidationError as err:
        raise SystemExit(f"campaigns: refusing to start: {settings_error_line(err)}") from None
