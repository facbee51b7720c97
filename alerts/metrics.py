"""Prometheus metrics of alert delivery (labels: channel, outcome, category, severity; no patient data)."""

from prometheus_client import Counter, Histogram

DELIVERY_ATTEMPTS = Counter(
    "respmon_alert_delivery_attempts_total", "Delivery attempts by channel and outcome", ["channel", "outcome"]
)
ALERTS_DELIVERED = Counter(
    "respmon_alerts_delivered_total", "Alert notifications delivered", ["channel", "category", "severity"]
)
UPLOAD_TO_DELIVERY = Histogram(
    "respmon_upload_to_alert_delivered_seconds", "From upload received to alert delivered",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
