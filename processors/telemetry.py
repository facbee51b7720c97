"""Prometheus metrics of the worker (labels: topic, kind, outcome, category, severity; no patient data)."""

from prometheus_client import Counter, Histogram

EVENTS_PROCESSED = Counter(
    "respmon_worker_events_processed_total", "Events processed by the worker", ["topic", "kind", "outcome"]
)
FINDINGS = Counter("respmon_findings_total", "Findings emitted by the rules engine", ["category", "severity", "state"])
ALERTS_QUEUED = Counter("respmon_alerts_queued_total", "Alert notifications queued in the outbox", ["category", "severity"])
DB_WRITE_SECONDS = Histogram("respmon_db_write_seconds", "Time of one batch's database transaction")
BATCH_EVENTS = Histogram("respmon_worker_batch_records", "Records stored per database transaction (one batch)",
                         buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000))
DB_ERRORS = Counter("respmon_db_errors_total", "Database errors (each is retried with backoff)", ["stage"])
UPLOAD_TO_FINDING = Histogram(
    "respmon_upload_to_finding_stored_seconds", "From upload received by ingest to its findings stored",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
