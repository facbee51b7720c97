"""Prometheus metrics of the ingest service. Labels carry formats and outcomes, never patient data."""

from prometheus_client import Counter, Histogram

UPLOADS = Counter(
    "respmon_ingest_uploads_total", "Uploads received, by detected format and outcome", ["format", "outcome"]
)
PARSE_FAILURES = Counter("respmon_ingest_parse_failures_total", "Uploads that failed to parse", ["format"])
RECORDS_PUBLISHED = Counter(
    "respmon_ingest_records_published_total", "Canonical records published to Kafka", ["kind"]
)
UPLOAD_BYTES = Histogram(
    "respmon_ingest_upload_bytes", "Size of accepted upload bodies", buckets=(1e3, 1e4, 1e5, 1e6, 5e6, 25e6)
)
PUBLISH_SECONDS = Histogram("respmon_ingest_publish_seconds", "Time to get Kafka acknowledgements")
QUOTA_REFUSALS = Counter(
    "respmon_ingest_quota_refusals_total",
    "Refused uploads not archived because their device's refused uploads reached the daily quota",
)
