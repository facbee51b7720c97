"""The one typed settings object of every service, read from the environment (prefix RESPMON_)."""

from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_WEBHOOK_SECRET = "dev-only-webhook-secret"
DEV_DATABASE_CREDENTIALS = "respmon:respmon@"  # the local stack's user and password (infra/stack.sh)


class Settings(BaseSettings):
    """Defaults match the local stack started by infra/stack.sh; production overrides every one."""

    model_config = SettingsConfigDict(env_prefix="RESPMON_", env_file=".env", extra="ignore", frozen=True)

    # Kafka
    kafka_bootstrap: str = "127.0.0.1:19092"
    topic_prefix: str = "respmon"
    topic_partitions: int = 4
    topic_replication: int = 1

    # PostgreSQL
    database_url: str = "postgresql://respmon:respmon@127.0.0.1:15432/respmon"

    # ingest HTTP service
    ingest_host: str = "127.0.0.1"
    ingest_port: int = 8080
    # ingest processes sharing the port (uvicorn workers: the parent binds it, the children accept on it)
    ingest_processes: int = Field(default=1, ge=1, le=64)
    max_upload_bytes: int = 25 * 1024 * 1024
    publish_timeout_s: float = 15.0
    # a record dated later than now plus this skew (device clocks drift) or before this floor is refused (422)
    max_clock_skew_s: float = Field(default=86400.0, ge=0, le=366 * 86400)
    min_record_date: date = date(1990, 1, 1)
    # a ResMed STR.edf holds one NIV night per day of the card's life: 5000 is over 13 years
    max_records_per_upload: int = Field(default=5000, ge=1)
    # archived bytes of rejected uploads per device per UTC day; over it the device gets 429 (0 = no quota)
    rejected_bytes_quota: int = Field(default=100 * 1024 * 1024, ge=0)

    # worker (faust)
    worker_app_id: str = "respmon-worker"
    worker_host: str = "127.0.0.1"
    worker_web_port: int = 6066
    worker_data_dir: Path = Path(".stack/worker")
    rules_file: Path | None = None
    rules_overrides: Path | None = None
    storage_upkeep_s: float = 600.0  # partitions ahead and daily summary refresh
    tick_interval_s: float = 3600.0  # re-evaluation of time-based rules (missing uploads, overdue tests)
    worker_batch_max: int = Field(default=200, ge=1, le=5000)  # events per PostgreSQL transaction at most
    # a worker that died (crash, OOM kill, stall exit) holds its partitions this long before another gets
    # them: faust's default is 60 s, a minute with no alerts for that worker's patients
    worker_session_timeout_s: float = Field(default=10.0, ge=6.0, le=300.0)
    # where the patient-history table lives: RocksDB files under worker_data_dir (memory bounded by the cache
    # below, a restart reads only the changelog written since) or a dict in memory (RSS grows with patients)
    worker_store: Literal["rocksdb", "memory"] = "rocksdb"
    # RocksDB block cache of the whole table (split evenly between its partitions), MiB
    worker_rocksdb_cache_mib: int = Field(default=128, ge=8, le=65536)
    # copies of each table partition other workers keep up to date from the changelog, to take over at once
    worker_standby_replicas: int = Field(default=1, ge=0, le=5)
    # the broker answers the worker's fetch once this many bytes wait or after the wait below: one fetch per
    # batch of uploads instead of one per record (faust's default, 1 byte) halves the broker's CPU per upload;
    # the wait is what an alert may be delayed by at most when uploads trickle in
    worker_fetch_min_bytes: int = Field(default=256 * 1024, ge=1, le=64 * 1024 * 1024)
    worker_fetch_max_wait_ms: int = Field(default=100, ge=0, le=1500)

    # alert delivery and the team API
    routing_file: Path | None = None
    webhook_url: str | None = None
    webhook_secret: SecretStr = SecretStr(DEV_WEBHOOK_SECRET)
    dispatch_interval_s: float = 1.0
    delivery_timeout_s: float = 5.0
    delivery_backoff_base_s: float = 2.0
    delivery_backoff_max_s: float = 300.0
    # FHIR push: every alert change as a transaction Bundle to this FHIR R4 server base (through the outbox)
    fhir_server_url: str | None = None
    fhir_server_token: SecretStr | None = None
    public_base_url: str = "http://127.0.0.1:8081"
    escalation_check_s: float = 30.0
    # a finding dated further back than this when it is computed (a backfilled SD card) is stored, not notified
    notify_horizon_days: int = Field(default=14, ge=1, le=3650)
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_from: str = "respmon@localhost"
    smtp_starttls: bool = False
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    alerts_api_host: str = "127.0.0.1"
    alerts_api_port: int = 8081
    # /docs, /redoc, /openapi.json of ingest and the team API, for team tokens only; false (production): 404
    api_docs: bool = True
    # people's sessions on the team API: ended after this long unused, and this long after login whatever
    session_idle_minutes: float = Field(default=30.0, gt=0, le=24 * 60)
    session_max_hours: float = Field(default=12.0, gt=0, le=24 * 7)
    # this many wrong passwords in a row lock a member id for login_lockout_s, doubled at each new lockout
    login_max_failures: int = Field(default=5, ge=1, le=100)
    login_lockout_s: float = Field(default=60.0, gt=0, le=86400)
    # the web view's PDF report: Debian's headless Chromium prints the report page (missing: the page says so)
    chromium_path: Path = Path("/usr/bin/chromium")
    # a print that takes longer is abandoned (the page answers 503)
    pdf_timeout_s: float = Field(default=30.0, gt=0, le=300)
    # the inbox reads alerts live at every view; what ranks the patients without one (FVC trend, last data
    # day: they change when a night arrives) is reused this long per patient (0: read at every view)
    inbox_rank_keep_s: float = Field(default=300.0, ge=0, le=3600)

    # production refuses the development defaults (webhook secret, database password) and empty secrets
    env: Literal["development", "production"] = "development"

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    # a client library repeating one message (a broker down: many lines a second) is logged once per window
    log_repeat_window_s: float = 10.0

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    def topic(self, name: str) -> str:
        """Full topic name: one prefix per deployment, so test runs and sites never share a topic."""
        return f"{self.topic_prefix}.{name}"

    @property
    def secure_cookies(self) -> bool:
        """Cookies carry `Secure` when the team reaches the API over https (behind the TLS proxy)."""
        return self.public_base_url.lower().startswith("https://")

    @property
    def faust_log_level(self) -> str:
        """The same level in the spelling faust's `--loglevel` accepts (crit, error, warn, info, debug)."""
        return {"WARNING": "warn", "CRITICAL": "crit"}.get(self.log_level, self.log_level.lower())

    @property
    def measurements_topic(self) -> str:
        return self.topic("measurements")

    @property
    def findings_topic(self) -> str:
        return self.topic("findings")

    @property
    def deadletter_topic(self) -> str:
        return self.topic("deadletter")

    @property
    def history_changelog_topic(self) -> str:
        """The worker's `patient-history` table changelog, named as faust names it (`<app id>-<table>-changelog`)."""
        return f"{self.worker_app_id}-patient-history-changelog"


def production_refusal(settings: Settings) -> str | None:
    """With RESPMON_ENV=production, the first development default or empty secret still in use, as one
    line naming the setting (the service then exits with the configuration error code); else None."""
    if settings.env != "production":
        return None
    secret = settings.webhook_secret.get_secret_value()
    if not secret.strip():
        return "RESPMON_WEBHOOK_SECRET is empty (RESPMON_ENV=production): set a secret of your own"
    if secret == DEV_WEBHOOK_SECRET:
        return "RESPMON_WEBHOOK_SECRET is the development default (RESPMON_ENV=production): set a secret of your own"
    if DEV_DATABASE_CREDENTIALS in settings.database_url:
        return ("RESPMON_DATABASE_URL uses the development password (respmon:respmon@, RESPMON_ENV=production):"
                " give the database its own password")
    if settings.smtp_password is not None and not settings.smtp_password.get_secret_value().strip():
        return "RESPMON_SMTP_PASSWORD is empty (RESPMON_ENV=production): set it or unset it"
    return None


@lru_cache
def get_settings() -> Settings:
    return Settings()
