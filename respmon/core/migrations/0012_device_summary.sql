-- Issue 18: the oximeter's own summary of a night (O2Ring file header), stored beside our metrics for
-- comparison only (device-reported; processors/metrics/DEFINITIONS.md stays the authority for ours).
-- NULL when the device reports none. Counts are one byte on the O2Ring: 255 means "at least 255".
ALTER TABLE oximetry_nights
    ADD COLUMN device_mean_spo2 double precision,
    ADD COLUMN device_min_spo2  double precision,
    ADD COLUMN device_drops3    integer,
    ADD COLUMN device_drops4    integer,
    ADD COLUMN device_t90_s     integer;
