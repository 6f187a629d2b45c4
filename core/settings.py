"""All configuration, read from `CAMPAIGNS_*` environment variables (contract §10)."""

from functools import lru_cache

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.constants import DEFAULT_TASK_QUEUE

DEV_SECRET = "dev-only-secret-change-me-0123456789"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CAMPAIGNS_", extra="ignore")

    environment: str = Field("development", description="development, test or production")
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

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_pool_size: int = Field(4, ge=1, le=64)
    email_from: str = "Campaigns <campaigns@example.com>"

    sms_url: str = "http://127.0.0.1:8025/messages"
    sms_token: str = "dev-sms-token"
    sms_from: str = "+15550000000"

    # Sending: recipients per batch activity and messages in flight inside it.
    # Defaults tuned with bench.throughput on 2 cores (README "Performance"): larger pages spend
    # less time between activities; 32 x 3 messages in flight keep both providers busy.
    batch_size: int = Field(2000, ge=1, le=10_000)
    send_concurrency: int = Field(32, ge=1, le=256)
    # Waves of a page in flight at once (claim, send, record), so the provider is never idle
    # while the database records a wave.
    send_lanes: int = Field(3, ge=1, le=16)
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

    # Operations (README "Operations"): logs, worker metrics, tracing.
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR")
    log_format: str = Field("json", description="`json` (one object per line) or `text`")
    worker_metrics_port: int | None = Field(
        None, ge=0, le=65535, description="port of the worker's Prometheus `/metrics`; unset or 0: off"
    )
    otlp_endpoint: str | None = Field(
        None, description="OTLP/HTTP collector, e.g. `http://otel:4318`; unset: tracing off"
    )

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
    def _refuse_dev_secrets_in_production(self) -> "Settings":
        if self.environment == "production":
            for name in ("jwt_secret", "tracking_secret", "webhook_secret"):
                if getattr(self, name) == DEV_SECRET:
                    raise ValueError(f"CAMPAIGNS_{name.upper()} must be set in production")
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
