-- Core schema: devices, raw archive, canonical measurements, findings, alerts and their outbox.
-- Every time-series table has its time column in the primary key (TimescaleDB hypertable rule).

CREATE TABLE devices (
    device_id     text PRIMARY KEY,
    patient_id    text NOT NULL,
    token_sha256  text NOT NULL UNIQUE,
    active        boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Every upload as received, before parsing: nothing is lost, even what cannot be parsed.
CREATE TABLE raw_uploads (
    upload_id        uuid PRIMARY KEY,
    device_id        text NOT NULL REFERENCES devices (device_id),
    received_at      timestamptz NOT NULL,
    sha256           text NOT NULL,
    idempotency_key  text,
    content_type     text,
    filename         text,
    size_bytes       integer NOT NULL,
    body             bytea NOT NULL,
    format           text,
    status           text NOT NULL DEFAULT 'received'
                     CHECK (status IN ('received', 'published', 'rejected')),
    error            text,
    record_count     integer
);
CREATE UNIQUE INDEX raw_uploads_device_sha ON raw_uploads (device_id, sha256);
CREATE UNIQUE INDEX raw_uploads_device_idem ON raw_uploads (device_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE deadletters (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    stage       text NOT NULL,          -- ingest | worker
    upload_id   uuid,
    reason      text NOT NULL
);

CREATE TABLE spirometry_sessions (
    patient_id      text NOT NULL,
    taken_at        timestamptz NOT NULL,
    source          text NOT NULL,
    posture         text NOT NULL,
    fvc_l           double precision,
    fvc_pct_pred    double precision,
    fvc_pct_pred_source text,
    fev1_l          double precision,
    svc_l           double precision,
    mip_cmh2o       double precision,
    mep_cmh2o       double precision,
    snip_cmh2o      double precision,
    pcf_lpm         double precision,
    pcf_assisted    boolean NOT NULL DEFAULT false,
    grade           text,
    upload_id       uuid,
    stored_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (patient_id, taken_at, source)
);

CREATE TABLE oximetry_nights (
    patient_id        text NOT NULL,
    start_at          timestamptz NOT NULL,
    source            text NOT NULL,
    night_date        date NOT NULL,
    interval_s        double precision NOT NULL,
    on_niv            boolean,
    valid             boolean NOT NULL,
    invalid_reason    text,
    recording_min     double precision,
    vrt_min           double precision,
    mean_spo2         double precision,
    min_spo2          double precision,
    t90_pct           double precision,
    t90_min           double precision,
    t88_pct           double precision,
    t88_min           double precision,
    longest_le88_min  double precision,
    odi3              double precision,
    odi4              double precision,
    mean_pulse        double precision,
    upload_id         uuid,
    stored_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (patient_id, start_at, source)
);

CREATE TABLE niv_nights (
    patient_id          text NOT NULL,
    night_date          date NOT NULL,
    source              text NOT NULL,
    usage_hours         double precision NOT NULL,
    leak_p95_lpm        double precision,
    leak_kind           text,
    ahi                 double precision,
    resp_rate           double precision,
    tidal_volume_ml     double precision,
    minute_vent_lpm     double precision,
    spo2_mean           double precision,
    spo2_t90_pct        double precision,
    pct_spont_triggered double precision,
    upload_id           uuid,
    stored_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (patient_id, night_date, source)
);

CREATE TABLE alsfrs_r (
    patient_id  text NOT NULL,
    taken_at    timestamptz NOT NULL,
    source      text NOT NULL,
    items       smallint[] NOT NULL,
    total       smallint NOT NULL,
    upload_id   uuid,
    stored_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (patient_id, taken_at, source)
);

-- A rule's verdict changes (open / resolved) per patient, as the rules engine emitted them.
CREATE TABLE findings (
    patient_id    text NOT NULL,
    rule_id       text NOT NULL,
    at            timestamptz NOT NULL,
    state         text NOT NULL CHECK (state IN ('open', 'resolved')),
    rule_version  text NOT NULL,
    category      text NOT NULL,
    severity      text NOT NULL,
    evidence      jsonb NOT NULL,
    action        text NOT NULL,
    citation      text NOT NULL,
    upload_id     uuid,
    stored_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (patient_id, rule_id, at, state)
);

CREATE TABLE alerts (
    alert_id      bigserial PRIMARY KEY,
    patient_id    text NOT NULL,
    rule_id       text NOT NULL,
    rule_version  text NOT NULL,
    category      text NOT NULL,
    severity      text NOT NULL,
    status        text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'acknowledged', 'resolved')),
    evidence      jsonb NOT NULL,
    action        text NOT NULL,
    citation      text NOT NULL,
    finding_at    timestamptz NOT NULL,
    opened_at     timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    upload_received_at timestamptz
);
-- One open (or acknowledged) alert per patient and rule at a time.
CREATE UNIQUE INDEX alerts_one_active ON alerts (patient_id, rule_id) WHERE status <> 'resolved';

-- Append-only audit trail of every alert change.
CREATE TABLE alert_events (
    id          bigserial PRIMARY KEY,
    alert_id    bigint NOT NULL REFERENCES alerts (alert_id),
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    action      text NOT NULL,
    note        text,
    finding_at  timestamptz
);

-- Transactional outbox: written in the same transaction as the alert change it announces.
CREATE TABLE deliveries (
    delivery_id      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    alert_id         bigint NOT NULL REFERENCES alerts (alert_id),
    channel          text NOT NULL,
    target           text NOT NULL,
    idempotency_key  text NOT NULL UNIQUE,
    payload          jsonb NOT NULL,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';

CREATE TABLE delivery_attempts (
    id           bigserial PRIMARY KEY,
    delivery_id  uuid NOT NULL REFERENCES deliveries (delivery_id),
    at           timestamptz NOT NULL DEFAULT now(),
    ok           boolean NOT NULL,
    status_code  integer,
    error        text
);
