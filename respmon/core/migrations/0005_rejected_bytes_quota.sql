-- Ingest refuses (429) uploads from a device whose rejected uploads archived today (UTC) reached
-- RESPMON_REJECTED_BYTES_QUOTA; it sums them before archiving every new upload. This partial index
-- keeps that sum to the device's rejected rows of the day (size included: an index-only scan),
-- however large the archive grows.
CREATE INDEX IF NOT EXISTS raw_uploads_device_rejected
    ON raw_uploads (device_id, received_at) INCLUDE (size_bytes)
    WHERE status = 'rejected';
