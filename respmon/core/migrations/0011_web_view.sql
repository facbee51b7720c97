-- Issue 15, the team's web view: an alert can be assigned to a member and snoozed until a day (it then
-- sinks below the alerts that need looking at in the inbox; escalation and delivery are unchanged), and
-- the team keeps notes on a patient, not only on an alert. Every assignment and snooze is also an
-- alert_events row (who, when, note), like acknowledgements.

ALTER TABLE alerts
    ADD COLUMN assigned_to    text REFERENCES team_members (member_id),
    ADD COLUMN snoozed_until  date;

CREATE TABLE patient_notes (
    id          bigserial PRIMARY KEY,
    patient_id  text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    author      text NOT NULL REFERENCES team_members (member_id),
    note        text NOT NULL CHECK (length(note) BETWEEN 1 AND 2000)
);
CREATE INDEX patient_notes_patient ON patient_notes (patient_id, at);

CREATE TRIGGER patient_notes_append_only BEFORE UPDATE OR DELETE ON patient_notes
    FOR EACH ROW EXECUTE FUNCTION respmon_refuse_change();
CREATE TRIGGER patient_notes_no_truncate BEFORE TRUNCATE ON patient_notes
    FOR EACH STATEMENT EXECUTE FUNCTION respmon_refuse_change();
REVOKE UPDATE, DELETE, TRUNCATE ON patient_notes FROM PUBLIC;
