"""Prometheus metrics of the worker (labels: topic, kind, outcome, category, severity; no patient data)."""

from collections.abc import Callable, Iterable

from prometheus_client import Counter, Gauge, Histogram

EVENTS_PROCESSED = Counter(
    "respmon_worker_events_processed_total", "Events processed by the worker", ["topic", "kind", "outcome"]
)
FINDINGS = Counter("respmon_findings_total", "Findings emitted by the rules engine", ["category", "severity", "state"])
ALERTS_QUEUED = Counter("respmon_alerts_queued_total", "Alert notifications queued in the outbox",
                        ["category", "severity"])
DB_WRITE_SECONDS = Histogram("respmon_db_write_seconds", "Time of one batch's database transaction")
BATCH_EVENTS = Histogram("respmon_worker_batch_records", "Records stored per database transaction (one batch)",
                         buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000))
DB_ERRORS = Counter("respmon_db_errors_total", "Database errors (each is retried with backoff)", ["stage"])
UPLOAD_TO_FINDING = Histogram(
    "respmon_upload_to_finding_stored_seconds", "From upload received by ingest to its findings stored",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
HISTORIES = Gauge("respmon_worker_patient_histories", "Patient histories held in the worker's table")
HISTORY_BYTES = Gauge(
    "respmon_worker_patient_history_bytes",
    "Bytes of the patient histories held in the worker's table; plan the worker's memory at about twice this",
)


def history_footprint(values: Iterable[bytes | None]) -> tuple[int, int]:
    """How many patient histories the worker holds and their bytes: what its memory grows with."""
    count = size = 0
    for value in values:
        if value:
            count, size = count + 1, size + len(value)
    return count, size


def watch_histories(footprint: Callable[[], tuple[int, int]]) -> None:
    """Both gauges are computed when /metrics is scraped (on the worker's event loop, like the table's
    writers): always current; ~1 ms for 10,000 patients in memory, RocksDB's own estimates on disk."""
    HISTORIES.set_function(lambda: footprint()[0])
    HISTORY_BYTES.set_function(lambda: footprint()[1])
