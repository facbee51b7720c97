-- Time-series storage: the oximetry signal table, then every time-series table made a TimescaleDB
-- hypertable where the extension can be used, else range-partitioned by month (PostgreSQL native),
-- and a daily per-patient summary. Existing rows are kept. The choice is recorded in
-- `respmon_storage`; `respmon/core/timescale.py` and `processors/store.py` read it.
-- Applied in one transaction by `respmon migrate` (respmon/core/db.py).

-- 1 Hz SpO2 and pulse of an oximetry night, written with its `oximetry_nights` row (same key).
-- Raw samples in codec `respmon-sig/1` (processors/store.py: tenths as int16, byte-shuffled,
-- zlib), already compressed, so stored EXTERNAL (TOAST does not try again). Per-minute arrays in
-- tenths (NULL = no valid sample that minute) serve charts without decoding the raw night.
-- Layout chosen by bench/storage/run.py (README, "Storage").
CREATE TABLE oximetry_signals (
    patient_id     text NOT NULL,
    start_at       timestamptz NOT NULL,
    source         text NOT NULL,
    interval_s     double precision NOT NULL,
    n_samples      integer NOT NULL,
    codec          text NOT NULL DEFAULT 'respmon-sig/1',
    spo2           bytea NOT NULL,
    pulse          bytea NOT NULL,
    motion         bytea,
    spo2_min_1m    smallint[] NOT NULL,
    spo2_mean_1m   smallint[] NOT NULL,
    spo2_max_1m    smallint[] NOT NULL,
    pulse_mean_1m  smallint[] NOT NULL,
    upload_id      uuid,
    stored_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (patient_id, start_at, source)
);
ALTER TABLE oximetry_signals ALTER COLUMN spo2 SET STORAGE EXTERNAL,
    ALTER COLUMN pulse SET STORAGE EXTERNAL, ALTER COLUMN motion SET STORAGE EXTERNAL;

-- What this migration decided (one row).
CREATE TABLE respmon_storage (
    singleton            boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    engine               text NOT NULL CHECK (engine IN ('timescaledb', 'postgresql')),
    timescaledb_license  text,
    daily_summary_kind   text NOT NULL CHECK (daily_summary_kind IN ('continuous_aggregate', 'materialized_view')),
    decided_at           timestamptz NOT NULL DEFAULT now()
);

-- Every time-series table, its time (partitioning) column and policies.
-- compress_after: TimescaleDB (Timescale License) only. retain: NULL = kept for ever (clinical
-- record); only raw signals expire, after 10 years, and only where TimescaleDB runs the policy.
CREATE TABLE respmon_timeseries (
    table_name      text PRIMARY KEY,
    time_column     text NOT NULL,
    compress_after  interval,
    retain          interval
);
INSERT INTO respmon_timeseries VALUES
    ('spirometry_sessions', 'taken_at',   '90 days', NULL),
    ('oximetry_nights',     'start_at',   '90 days', NULL),
    ('oximetry_signals',    'start_at',   '90 days', '10 years'),
    ('niv_nights',          'night_date', '90 days', NULL),
    ('alsfrs_r',            'taken_at',   '90 days', NULL),
    ('findings',            'at',         '90 days', NULL);

-- The UTC calendar day of a bucket, whatever its type (timestamptz bucket or date).
CREATE FUNCTION respmon_utc_date(timestamptz) RETURNS date
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT ($1 AT TIME ZONE 'UTC')::date $$;
CREATE FUNCTION respmon_utc_date(date) RETURNS date
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT $1 $$;

-- SQL literal of a month boundary typed for a table's time column: a date, or midnight UTC.
CREATE FUNCTION respmon_month_bound(tbl text, month date) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    col_type text;
BEGIN
    SELECT format_type(a.atttypid, a.atttypmod) INTO col_type
      FROM respmon_timeseries r
      JOIN pg_attribute a ON a.attrelid = to_regclass(r.table_name) AND a.attname = r.time_column
     WHERE r.table_name = tbl;
    IF col_type = 'date' THEN
        RETURN quote_literal(to_char(month, 'YYYY-MM-DD'));
    END IF;
    RETURN quote_literal(to_char(month, 'YYYY-MM-DD') || ' 00:00:00+00');
END $$;

-- SQL expression of the first day of the month (a date) of a table's time column, in UTC.
CREATE FUNCTION respmon_month_of(tbl text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN format_type(a.atttypid, a.atttypmod) = 'date'
                THEN format('date_trunc(''month'', %I::timestamp)::date', r.time_column)
                ELSE format('date_trunc(''month'', %I AT TIME ZONE ''UTC'')::date', r.time_column) END
      FROM respmon_timeseries r
      JOIN pg_attribute a ON a.attrelid = to_regclass(r.table_name) AND a.attname = r.time_column
     WHERE r.table_name = tbl
$$;

-- Create the partition of `month` (tbl_pYYYYMM) unless it exists; rows of that month waiting in
-- the DEFAULT partition are moved into it. Created standalone then attached, so the parent only
-- takes SHARE UPDATE EXCLUSIVE (writers keep going); only DEFAULT is locked exclusively.
-- Returns the partition's name, or NULL if it existed.
CREATE FUNCTION respmon_create_month_partition(tbl text, month date) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    lo     date := date_trunc('month', month::timestamp)::date;
    part   text := format('%s_p%s', tbl, to_char(lo, 'YYYYMM'));
    col    text := (SELECT time_column FROM respmon_timeseries WHERE table_name = tbl);
    lo_lit text := respmon_month_bound(tbl, lo);
    hi_lit text := respmon_month_bound(tbl, (lo + interval '1 month')::date);
BEGIN
    IF to_regclass(part) IS NOT NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING ALL)', part, tbl);
    IF to_regclass(tbl || '_default') IS NOT NULL THEN
        EXECUTE format('WITH moved AS (DELETE FROM %I WHERE %I >= %s AND %I < %s RETURNING *)'
                       ' INSERT INTO %I SELECT * FROM moved',
                       tbl || '_default', col, lo_lit, col, hi_lit, part);
    END IF;
    EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%s) TO (%s)', tbl, part, lo_lit, hi_lit);
    RETURN part;
END $$;

-- Monthly partitions of every partitioned time-series table: the current month (UTC) and
-- `months_ahead` after it, plus every month that has rows in DEFAULT (late uploads, backfill of
-- old SD cards). Called by this migration and periodically by the worker
-- (processors.store.ensure_partitions). Returns the partitions created. No-op for hypertables.
CREATE FUNCTION respmon_ensure_partitions(months_ahead int DEFAULT 3) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    t      record;
    month  date;
    made   text;
    this_month date := date_trunc('month', now() AT TIME ZONE 'UTC')::date;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('respmon-partitions'));
    FOR t IN SELECT r.table_name
               FROM respmon_timeseries r
               JOIN pg_partitioned_table p ON p.partrelid = to_regclass(r.table_name)
              ORDER BY r.table_name LOOP
        FOR month IN EXECUTE format(
            'SELECT DISTINCT %s FROM %I UNION SELECT ($1 + make_interval(months => i))::date'
            ' FROM generate_series(0, $2) AS i ORDER BY 1',
            respmon_month_of(t.table_name), t.table_name || '_default') USING this_month, months_ahead
        LOOP
            made := respmon_create_month_partition(t.table_name, month);
            IF made IS NOT NULL THEN
                RETURN NEXT made;
            END IF;
        END LOOP;
    END LOOP;
END $$;

-- Convert the time-series tables.
DO $$
DECLARE
    t        record;
    legacy   text;
    license  text;
    engine   text := 'postgresql';
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        engine := 'timescaledb';
    ELSIF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') THEN
        BEGIN
            CREATE EXTENSION IF NOT EXISTS timescaledb;
            engine := 'timescaledb';
        EXCEPTION WHEN OTHERS THEN
            -- e.g. not in shared_preload_libraries, or not allowed to this role
            RAISE NOTICE 'timescaledb is available but could not be created (%): using native partitioning', SQLERRM;
        END;
    ELSE
        RAISE NOTICE 'timescaledb is not available on this server: using native monthly partitioning';
    END IF;

    IF engine = 'timescaledb' THEN
        license := current_setting('timescaledb.license', true);
        FOR t IN SELECT * FROM respmon_timeseries ORDER BY table_name LOOP
            EXECUTE format('SELECT create_hypertable(%L::regclass, %L::name, chunk_time_interval => interval ''1 month'','
                           ' if_not_exists => true, migrate_data => true)', t.table_name, t.time_column);
            IF license = 'timescale' THEN
                EXECUTE format('ALTER TABLE %I SET (timescaledb.compress, timescaledb.compress_segmentby = %L,'
                               ' timescaledb.compress_orderby = %L)', t.table_name, 'patient_id', t.time_column || ' DESC');
                EXECUTE format('SELECT add_compression_policy(%L::regclass, %L::interval, if_not_exists => true)',
                               t.table_name, t.compress_after);
                IF t.retain IS NOT NULL THEN
                    EXECUTE format('SELECT add_retention_policy(%L::regclass, %L::interval, if_not_exists => true)',
                                   t.table_name, t.retain);
                END IF;
            END IF;
        END LOOP;
        IF license IS DISTINCT FROM 'timescale' THEN
            RAISE NOTICE 'timescaledb.license is % (not timescale): hypertables only; compression, retention and'
                         ' continuous aggregates skipped, daily_summary is a materialized view', coalesce(license, 'unset');
        END IF;
    ELSE
        FOR t IN SELECT * FROM respmon_timeseries ORDER BY table_name LOOP
            legacy := t.table_name || '_0001';
            EXECUTE format('ALTER TABLE %I RENAME TO %I', t.table_name, legacy);
            EXECUTE format('ALTER TABLE %I RENAME CONSTRAINT %I TO %I', legacy, t.table_name || '_pkey', legacy || '_pkey');
            EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING ALL) PARTITION BY RANGE (%I)',
                           t.table_name, legacy, t.time_column);
            EXECUTE format('CREATE TABLE %I PARTITION OF %I DEFAULT', t.table_name || '_default', t.table_name);
            -- Empty partitions for every month of the existing rows first, so each row is copied once.
            EXECUTE format('SELECT count(respmon_create_month_partition(%L, m)) FROM (SELECT DISTINCT %s AS m FROM %I) months',
                           t.table_name, respmon_month_of(t.table_name),
                           legacy);
            EXECUTE format('INSERT INTO %I SELECT * FROM %I', t.table_name, legacy);
            EXECUTE format('DROP TABLE %I', legacy);
        END LOOP;
        PERFORM respmon_ensure_partitions(3);
    END IF;

    INSERT INTO respmon_storage (engine, timescaledb_license, daily_summary_kind)
    VALUES (engine, license,
            CASE WHEN engine = 'timescaledb' AND license = 'timescale' THEN 'continuous_aggregate'
                 ELSE 'materialized_view' END);
END $$;

-- Daily per-patient summary. Per-kind daily aggregates (day = UTC calendar day of the time
-- column; NIV: its night_date) are continuous aggregates under the Timescale License, plain views
-- elsewhere; `daily_summary` joins them: a plain view over continuous aggregates, or a
-- materialized view refreshed by the pipeline (processors.store.refresh_daily_summary).
DO $$
DECLARE
    cagg   boolean := (SELECT daily_summary_kind = 'continuous_aggregate' FROM respmon_storage);
    k      record;
    bucket text;
    combine text := $q$
        SELECT patient_id, day,
               coalesce(o.oximetry_nights, 0)::int AS oximetry_nights, o.t90_pct_max, o.odi3_max, o.min_spo2,
               o.longest_le88_min_max,
               coalesce(n.niv_nights, 0)::int AS niv_nights, n.niv_usage_hours, n.niv_leak_p95_lpm_max, n.niv_ahi_max,
               coalesce(s.spirometry_sessions, 0)::int AS spirometry_sessions, s.fvc_pct_pred_best, s.fvc_l_best,
               s.mip_cmh2o_best, s.snip_cmh2o_best,
               a.alsfrs_total_min,
               coalesce(f.findings_opened, 0)::int AS findings_opened,
               coalesce(f.findings_resolved, 0)::int AS findings_resolved
          FROM (SELECT respmon_utc_date(bucket) AS day, * FROM daily_oximetry) o
          FULL JOIN (SELECT respmon_utc_date(bucket) AS day, * FROM daily_niv) n USING (patient_id, day)
          FULL JOIN (SELECT respmon_utc_date(bucket) AS day, * FROM daily_spirometry) s USING (patient_id, day)
          FULL JOIN (SELECT respmon_utc_date(bucket) AS day, * FROM daily_alsfrs) a USING (patient_id, day)
          FULL JOIN (SELECT respmon_utc_date(bucket) AS day, * FROM daily_findings) f USING (patient_id, day)
    $q$;
BEGIN
    FOR k IN SELECT * FROM (VALUES
        ('daily_oximetry', 'oximetry_nights', 'start_at',
         'count(*) AS oximetry_nights, max(t90_pct) FILTER (WHERE valid) AS t90_pct_max,'
         ' max(odi3) FILTER (WHERE valid) AS odi3_max, min(min_spo2) FILTER (WHERE valid) AS min_spo2,'
         ' max(longest_le88_min) FILTER (WHERE valid) AS longest_le88_min_max'),
        ('daily_niv', 'niv_nights', 'night_date',
         'count(*) AS niv_nights, sum(usage_hours) AS niv_usage_hours, max(leak_p95_lpm) AS niv_leak_p95_lpm_max,'
         ' max(ahi) AS niv_ahi_max'),
        ('daily_spirometry', 'spirometry_sessions', 'taken_at',
         'count(*) AS spirometry_sessions, max(fvc_pct_pred) AS fvc_pct_pred_best, max(fvc_l) AS fvc_l_best,'
         ' max(mip_cmh2o) AS mip_cmh2o_best, max(snip_cmh2o) AS snip_cmh2o_best'),
        ('daily_alsfrs', 'alsfrs_r', 'taken_at', 'min(total) AS alsfrs_total_min'),
        ('daily_findings', 'findings', 'at',
         'count(*) FILTER (WHERE state = ''open'') AS findings_opened,'
         ' count(*) FILTER (WHERE state = ''resolved'') AS findings_resolved')
    ) AS v(name, tbl, col, aggs) LOOP
        IF cagg THEN
            bucket := format('time_bucket(interval ''1 day'', %I)', k.col);
            EXECUTE format('CREATE MATERIALIZED VIEW %I WITH (timescaledb.continuous, timescaledb.materialized_only = false)'
                           ' AS SELECT patient_id, %s AS bucket, %s FROM %I GROUP BY patient_id, %s WITH NO DATA',
                           k.name, bucket, k.aggs, k.tbl, bucket);
            EXECUTE format('SELECT add_continuous_aggregate_policy(%L::regclass, start_offset => interval ''400 days'','
                           ' end_offset => NULL, schedule_interval => interval ''1 hour'', if_not_exists => true)', k.name);
        ELSE
            bucket := CASE WHEN k.col = 'night_date' THEN quote_ident(k.col)
                           ELSE format('date_trunc(''day'', %I, ''UTC'')', k.col) END;
            EXECUTE format('CREATE VIEW %I AS SELECT patient_id, %s AS bucket, %s FROM %I GROUP BY patient_id, %s',
                           k.name, bucket, k.aggs, k.tbl, bucket);
        END IF;
    END LOOP;
    IF cagg THEN
        EXECUTE 'CREATE VIEW daily_summary AS ' || combine;
    ELSE
        EXECUTE 'CREATE MATERIALIZED VIEW daily_summary AS ' || combine;
        -- Unique index: REFRESH ... CONCURRENTLY (readers never blocked) needs one.
        CREATE UNIQUE INDEX daily_summary_key ON daily_summary (patient_id, day);
    END IF;
END $$;
