-- Issue 12, alert burden: one active alert per (patient, category) instead of per (patient, rule).
-- `rules` lists every contributing rule ({rule id: {severity, state, at, rule_version, action, citation,
-- resolution}}) and `evidence` holds each one's evidence ({rule id: evidence}); `rule_id`, `action` and
-- `citation` are the lead rule's (the worst one still open). `notified_severity` is the severity the team
-- was last told (NULL and `notified_at` NULL: never notified, raised by backfilled findings, not escalated).
-- `resolution` says why an alert closed. Rows written before stay readable: each becomes the alert of its one rule.

ALTER TABLE alerts
    ADD COLUMN rules              jsonb NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN notified_severity  text,
    ADD COLUMN resolution         text CHECK (resolution IN ('condition_cleared', 'no_longer_applies', 'team', 'merged')),
    ALTER COLUMN notified_at DROP NOT NULL;

UPDATE alerts SET
    rules = jsonb_build_object(rule_id, jsonb_build_object(
        'severity', severity, 'state', CASE WHEN status = 'resolved' THEN 'resolved' ELSE 'open' END,
        'at', to_jsonb(finding_at), 'rule_version', rule_version, 'action', action, 'citation', citation,
        'resolution', NULL)),
    evidence = jsonb_build_object(rule_id, evidence),
    notified_severity = severity;

-- Active alerts of one patient and category become one: the worst (an unacknowledged one first, then the
-- oldest) takes the others' rules and evidence; the others are resolved as 'merged', with an audit row each.
CREATE TEMP TABLE alert_merge ON COMMIT DROP AS
SELECT alert_id, status, first_value(alert_id) OVER (
           PARTITION BY patient_id, category
           ORDER BY array_position(ARRAY['info', 'warn', 'high', 'urgent'], severity) DESC,
                    (status = 'open') DESC, opened_at, alert_id) AS survivor
  FROM alerts WHERE status <> 'resolved';

UPDATE alerts a SET
    rules = m.rules, evidence = m.evidence, updated_at = now(),
    status = CASE WHEN m.any_open THEN 'open' ELSE a.status END
  FROM (SELECT g.survivor, jsonb_object_agg(r.key, r.value) AS rules,
               jsonb_object_agg(e.key, e.value) AS evidence, bool_or(g.status = 'open') AS any_open
          FROM alert_merge g JOIN alerts x USING (alert_id),
               jsonb_each(x.rules) r, jsonb_each(x.evidence) e
         GROUP BY g.survivor HAVING count(DISTINCT g.alert_id) > 1) m
 WHERE a.alert_id = m.survivor;

INSERT INTO alert_events (alert_id, actor, action, note)
SELECT alert_id, 'migration', 'merged', 'into alert ' || survivor || ' (one alert per patient and category)'
  FROM alert_merge WHERE alert_id <> survivor;

UPDATE alerts a SET status = 'resolved', resolution = 'merged', resolved_at = now(), updated_at = now()
  FROM alert_merge m WHERE a.alert_id = m.alert_id AND m.alert_id <> m.survivor;

DROP INDEX alerts_one_active;
CREATE UNIQUE INDEX alerts_one_active ON alerts (patient_id, category) WHERE status <> 'resolved';
CREATE INDEX alerts_patient_category ON alerts (patient_id, category, alert_id);
