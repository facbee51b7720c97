-- Issue 14, care teams and access: each clinician sees only their own patients, every look is recorded.
--
-- team_members becomes the identity of a person or a service (enabled or not, an optional argon2id
-- password); its roles are rows of team_memberships (member x team x role), its bearer tokens rows of
-- team_tokens (several at once while one is rotated, each with an expiry and a last use). Patients belong
-- to care teams through patient_teams (history kept: who assigned, who ended it, when). Every access of a
-- member to a patient's data is a row of access_log, which refuses UPDATE, DELETE and TRUNCATE.

CREATE TABLE team_memberships (
    member_id  text NOT NULL REFERENCES team_members (member_id) ON DELETE CASCADE,
    team       text NOT NULL,
    role       text NOT NULL CHECK (role IN ('viewer', 'clinician', 'admin')),
    added_at   timestamptz NOT NULL DEFAULT now(),
    added_by   text NOT NULL,
    PRIMARY KEY (member_id, team, role)
);
CREATE INDEX team_memberships_team ON team_memberships (team, role);

CREATE TABLE team_tokens (
    token_sha256  text PRIMARY KEY,
    member_id     text NOT NULL REFERENCES team_members (member_id) ON DELETE CASCADE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    revoked_at    timestamptz,
    last_used_at  timestamptz
);
CREATE INDEX team_tokens_member ON team_tokens (member_id);

CREATE TABLE patient_teams (
    id           bigserial PRIMARY KEY,
    patient_id   text NOT NULL,
    team         text NOT NULL,
    assigned_at  timestamptz NOT NULL DEFAULT now(),
    assigned_by  text NOT NULL,
    ended_at     timestamptz,
    ended_by     text
);
CREATE UNIQUE INDEX patient_teams_current ON patient_teams (patient_id, team) WHERE ended_at IS NULL;
CREATE INDEX patient_teams_team ON patient_teams (team, patient_id) WHERE ended_at IS NULL;

-- Before this migration every member saw every patient: the patients known now (devices, alerts) are
-- assigned to every team that exists, so nobody loses sight of a patient; narrow it with
-- `respmon patient-assign PATIENT TEAM --remove`.
INSERT INTO patient_teams (patient_id, team, assigned_by)
SELECT p.patient_id, t.team, 'migration 0007'
  FROM (SELECT patient_id FROM devices UNION SELECT patient_id FROM alerts) p,
       (SELECT DISTINCT team FROM team_members) t;

INSERT INTO team_memberships (member_id, team, role, added_by)
SELECT member_id, team, 'clinician', 'migration 0007' FROM team_members;
INSERT INTO team_tokens (token_sha256, member_id, created_at)
SELECT token_sha256, member_id, created_at FROM team_members;

ALTER TABLE team_members
    DROP COLUMN team,
    DROP COLUMN token_sha256,
    ADD COLUMN password_argon2  text,
    ADD COLUMN password_set_at  timestamptz;

ALTER TABLE devices
    ADD COLUMN expires_at    timestamptz,
    ADD COLUMN revoked_at    timestamptz,
    ADD COLUMN last_used_at  timestamptz;

-- Keyed by the id typed at login, known or not: an unknown id locks like a real one, so the answers do
-- not tell which ids exist. `lockouts` doubles the next lock; a successful login deletes the row.
CREATE TABLE login_throttle (
    member_id        text PRIMARY KEY,
    failures         integer NOT NULL DEFAULT 0,
    lockouts         integer NOT NULL DEFAULT 0,
    locked_until     timestamptz,
    last_failure_at  timestamptz
);

CREATE TABLE team_sessions (
    session_sha256  text PRIMARY KEY,
    member_id       text NOT NULL REFERENCES team_members (member_id) ON DELETE CASCADE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_seen_at    timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    ended_at        timestamptz,
    client          text
);
CREATE INDEX team_sessions_member ON team_sessions (member_id) WHERE ended_at IS NULL;

-- A route per care team: every alert of a patient of the team goes there too (besides the routing file).
CREATE TABLE team_routes (
    team          text NOT NULL,
    name          text NOT NULL,
    channel       text NOT NULL CHECK (channel IN ('webhook', 'email')),
    target        text NOT NULL,
    categories    text[],  -- NULL: every category
    min_severity  text NOT NULL DEFAULT 'warn',
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text NOT NULL,
    PRIMARY KEY (team, name)
);

CREATE TABLE access_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    member_id   text NOT NULL,
    patient_id  text NOT NULL,
    action      text NOT NULL,
    route       text NOT NULL,
    alert_id    bigint,
    client      text
);
CREATE INDEX access_log_patient ON access_log (patient_id, at);
CREATE INDEX access_log_member ON access_log (member_id, at);

CREATE FUNCTION respmon_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER access_log_append_only BEFORE UPDATE OR DELETE ON access_log
    FOR EACH ROW EXECUTE FUNCTION respmon_refuse_change();
CREATE TRIGGER access_log_no_truncate BEFORE TRUNCATE ON access_log
    FOR EACH STATEMENT EXECUTE FUNCTION respmon_refuse_change();
REVOKE UPDATE, DELETE, TRUNCATE ON access_log FROM PUBLIC;
