-- Issue 18, ResMed session files into nights: a NIV night's values computed from its session files (PLD:
-- pressure percentiles, IPAP/EPAP on bilevel; SAD/SA2: the device oximeter's lowest SpO2) are stored on
-- the same niv_nights row as the device's day summary (STR). `basis` says which part the row holds:
-- 'day_summary' (STR, niv_csv; every row before this migration) or 'sessions' only; the upsert in
-- processors/store.py merges the parts (the day summary wins where both give a value, nothing is
-- cleared by a part that lacks it). All new columns nullable except basis (default = what rows were).
ALTER TABLE niv_nights
    ADD COLUMN basis text NOT NULL DEFAULT 'day_summary' CHECK (basis IN ('day_summary', 'sessions')),
    ADD COLUMN pressure_p50_cmh2o double precision,
    ADD COLUMN pressure_p95_cmh2o double precision,
    ADD COLUMN ipap_p50_cmh2o double precision,
    ADD COLUMN ipap_p95_cmh2o double precision,
    ADD COLUMN epap_p50_cmh2o double precision,
    ADD COLUMN epap_p95_cmh2o double precision,
    ADD COLUMN spo2_min double precision;
