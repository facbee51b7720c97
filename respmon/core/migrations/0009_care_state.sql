-- Issue 12, patient care state: what the team sets and the rules read (NIV declined, invasive ventilation,
-- end of life, left the service; 'none' clears it). `care_states` is the append-only audit of every change:
-- who set it, when, from which day, with their note. `change_id` is the change's id on the measurements
-- topic: the command or team API that publishes it and the worker that applies it both insert the row, so
-- a replay or the second writer adds nothing. The current state of a patient is the last change set
-- (`patient_care_states`); the rules read it from the worker's patient history, from its `since` on.

CREATE TABLE care_states (
    id           bigserial PRIMARY KEY,
    change_id    text NOT NULL UNIQUE,
    patient_id   text NOT NULL,
    state        text NOT NULL
                 CHECK (state IN ('none', 'niv_declined', 'invasive_ventilation', 'end_of_life', 'left_service')),
    since        date NOT NULL,
    note         text,
    set_by       text NOT NULL,
    set_at       timestamptz NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX care_states_patient ON care_states (patient_id, set_at, id);

-- respmon_refuse_change() comes from 0007 (access_log): the audit trail is never rewritten.
CREATE TRIGGER care_states_append_only BEFORE UPDATE OR DELETE ON care_states
    FOR EACH ROW EXECUTE FUNCTION respmon_refuse_change();
CREATE TRIGGER care_states_no_truncate BEFORE TRUNCATE ON care_states
    FOR EACH STATEMENT EXECUTE FUNCTION respmon_refuse_change();
REVOKE UPDATE, DELETE, TRUNCATE ON care_states FROM PUBLIC;

CREATE VIEW patient_care_states AS
SELECT DISTINCT ON (patient_id) patient_id, state, since, note, set_by, set_at, change_id
  FROM care_states
 ORDER BY patient_id, set_at DESC, id DESC;
