-- Hypercapnia (issue 12): spot CO2 (blood gases, transcutaneous and end-tidal readings) and overnight
-- transcutaneous capnography nights. Columns: the record and metric fields `schemas.kinds` declares
-- stored (`processors/store.py` derives them; tests/test_storage/test_kind_tables.py checks), primary key
-- = the declared natural key. Laid out as 0003 laid out the other time-series tables, on the engine it
-- recorded in `respmon_storage`: hypertables, or monthly range partitions with a DEFAULT partition.
-- Applied in one transaction by `respmon migrate` (respmon/core/db.py).

-- pCO2 and pO2 in mmHg (parsers convert kPa); the sample is part of the key (an arterial and a venous
-- gas drawn together are two rows). A serum bicarbonate alone has no pCO2.
CREATE TABLE blood_gases (
    patient_id          text NOT NULL,
    taken_at            timestamptz NOT NULL,
    sample              text NOT NULL
                        CHECK (sample IN ('arterial', 'capillary', 'venous', 'transcutaneous', 'end_tidal')),
    source              text NOT NULL,
    pco2_mmhg           double precision,
    bicarbonate_mmol_l  double precision,
    ph                  double precision,
    po2_mmhg            double precision,
    upload_id           uuid,
    stored_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (patient_id, taken_at, sample, source)
);

-- One TcCO2 night's metrics (processors/metrics/DEFINITIONS.md section 5); the samples stay in the
-- raw upload, from which a night can be re-scored.
CREATE TABLE capnography_nights (
    patient_id          text NOT NULL,
    start_at            timestamptz NOT NULL,
    source              text NOT NULL,
    night_date          date NOT NULL,
    interval_s          double precision NOT NULL,
    valid               boolean NOT NULL,
    invalid_reason      text,
    recording_min       double precision,
    valid_min           double precision,
    mean_tcpco2         double precision,
    max_tcpco2          double precision,
    baseline_tcpco2     double precision,
    max_rise_mmhg       double precision,
    gt50_min            double precision,
    gt55_min            double precision,
    longest_gt55_min    double precision,
    rise10_min          double precision,
    longest_rise10_min  double precision,
    mean_spo2           double precision,
    upload_id           uuid,
    stored_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (patient_id, start_at, source)
);

INSERT INTO respmon_timeseries VALUES
    ('blood_gases',        'taken_at', '90 days', NULL),
    ('capnography_nights', 'start_at', '90 days', NULL);

DO $$
DECLARE
    t        record;
    legacy   text;
    engine   text := (SELECT s.engine FROM respmon_storage s);
    license  text := (SELECT s.timescaledb_license FROM respmon_storage s);
BEGIN
    FOR t IN SELECT * FROM respmon_timeseries
              WHERE table_name IN ('blood_gases', 'capnography_nights') ORDER BY table_name LOOP
        IF engine = 'timescaledb' THEN
            EXECUTE format('SELECT create_hypertable(%L::regclass, %L::name, chunk_time_interval => interval ''1 month'','
                           ' if_not_exists => true)', t.table_name, t.time_column);
            IF license = 'timescale' THEN
                EXECUTE format('ALTER TABLE %I SET (timescaledb.compress, timescaledb.compress_segmentby = %L,'
                               ' timescaledb.compress_orderby = %L)', t.table_name, 'patient_id', t.time_column || ' DESC');
                EXECUTE format('SELECT add_compression_policy(%L::regclass, %L::interval, if_not_exists => true)',
                               t.table_name, t.compress_after);
            END IF;
        ELSE
            -- the empty table becomes the template of its partitioned twin (as 0003 converted the others)
            legacy := t.table_name || '_0008';
            EXECUTE format('ALTER TABLE %I RENAME TO %I', t.table_name, legacy);
            EXECUTE format('ALTER TABLE %I RENAME CONSTRAINT %I TO %I', legacy, t.table_name || '_pkey', legacy || '_pkey');
            EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING ALL) PARTITION BY RANGE (%I)',
                           t.table_name, legacy, t.time_column);
            EXECUTE format('CREATE TABLE %I PARTITION OF %I DEFAULT', t.table_name || '_default', t.table_name);
            EXECUTE format('DROP TABLE %I', legacy);
        END IF;
    END LOOP;
    IF engine = 'postgresql' THEN
        PERFORM respmon_ensure_partitions(3);
    END IF;
END $$;
