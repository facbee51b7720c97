-- Alerts for the team: acknowledgement, escalation, routes, and team credentials (separate from devices).

CREATE TABLE team_members (
    member_id     text PRIMARY KEY,
    team          text NOT NULL,
    token_sha256  text NOT NULL UNIQUE,
    active        boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE alerts
    ADD COLUMN acknowledged_at  timestamptz,
    ADD COLUMN acknowledged_by  text,
    ADD COLUMN resolved_at      timestamptz,
    ADD COLUMN notified_at      timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN escalated_at     timestamptz;
CREATE INDEX alerts_escalation_due ON alerts (notified_at) WHERE status = 'open' AND escalated_at IS NULL;
CREATE INDEX alerts_status ON alerts (status, category, severity);

ALTER TABLE deliveries
    ADD COLUMN route  text NOT NULL DEFAULT 'default',
    ADD COLUMN kind   text NOT NULL DEFAULT 'notify' CHECK (kind IN ('notify', 'escalation'));
