-- Evidence that holds up (issue 18); see migrations/sqlite/0013_evidence_seal.sql
-- for the why. Same shape.
ALTER TABLE alert_events ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
ALTER TABLE alert_events ADD COLUMN key_id TEXT NOT NULL DEFAULT '';
ALTER TABLE alert_events ADD COLUMN on_behalf_of TEXT;
ALTER TABLE alert_events ADD COLUMN facts TEXT NOT NULL DEFAULT '';
ALTER TABLE alert_events ADD COLUMN readings_digest TEXT NOT NULL DEFAULT '';
ALTER TABLE alert_events ADD COLUMN readings TEXT NOT NULL DEFAULT '';
-- The daily anchor reads a day's rows by time.
CREATE INDEX alert_events_at ON alert_events (at);

ALTER TABLE orders ADD COLUMN on_behalf_of TEXT;
ALTER TABLE orders ADD COLUMN cancelled_for TEXT;

ALTER TABLE finding_revisions ADD COLUMN to_threshold DOUBLE PRECISION;
ALTER TABLE finding_revisions ADD COLUMN to_message TEXT;
ALTER TABLE finding_revisions ADD COLUMN to_evidence TEXT;
ALTER TABLE finding_revisions ADD COLUMN superseded BIGINT NOT NULL DEFAULT 0;
UPDATE finding_revisions r SET
    to_threshold = f.threshold,
    to_message = f.message,
    to_evidence = f.evidence,
    to_value = f.value,
    superseded = CASE WHEN f.superseded_at IS NULL THEN 0 ELSE 1 END
FROM findings f
WHERE f.id = r.finding_id
  AND r.id IN (SELECT max(id) FROM finding_revisions GROUP BY finding_id);

CREATE VIEW findings_current AS
SELECT f.id, f.natural_key, f.rule, f.severity, f.enterprise, f.location, f.factor,
       f.window_start, f.window_end, f.at, f.detail, f.created,
       CASE WHEN r.id IS NULL THEN f.value ELSE r.to_value END AS value,
       CASE WHEN r.id IS NULL THEN f.threshold ELSE r.to_threshold END AS threshold,
       CASE WHEN r.id IS NULL OR r.superseded = 1 THEN f.message ELSE r.to_message END AS message,
       CASE WHEN r.id IS NULL OR r.superseded = 1 THEN f.evidence ELSE r.to_evidence END AS evidence,
       (SELECT count(*) FROM finding_revisions c WHERE c.finding_id = f.id) AS revision,
       CASE WHEN r.superseded = 1 THEN r.at END AS superseded_at,
       CASE WHEN r.superseded = 1 THEN r.reason END AS superseded_reason
FROM findings f
LEFT JOIN finding_revisions r
       ON r.id = (SELECT max(id) FROM finding_revisions m WHERE m.finding_id = f.id);

CREATE TABLE retention_log (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        BIGINT NOT NULL,
    kind      TEXT   NOT NULL CHECK (kind IN ('start', 'done')),
    before_ms BIGINT NOT NULL,
    actor     TEXT   NOT NULL,
    rows      BIGINT
);

CREATE FUNCTION pollwatch_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

-- A reading may be deleted only while the latest retention_log row is a
-- covering 'start' (pollwatch evidence retain).
CREATE FUNCTION pollwatch_readings_retention() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM retention_log l
               WHERE l.id = (SELECT max(id) FROM retention_log)
                 AND l.kind = 'start' AND OLD.ts < l.before_ms) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'readings is append-only: DELETE refused (retention goes through pollwatch evidence retain)'
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER alert_events_append_only BEFORE UPDATE OR DELETE ON alert_events
    FOR EACH ROW EXECUTE FUNCTION pollwatch_append_only();
CREATE TRIGGER findings_append_only BEFORE UPDATE OR DELETE ON findings
    FOR EACH ROW EXECUTE FUNCTION pollwatch_append_only();
CREATE TRIGGER finding_revisions_append_only BEFORE UPDATE OR DELETE ON finding_revisions
    FOR EACH ROW EXECUTE FUNCTION pollwatch_append_only();
CREATE TRIGGER retention_log_append_only BEFORE UPDATE OR DELETE ON retention_log
    FOR EACH ROW EXECUTE FUNCTION pollwatch_append_only();
CREATE TRIGGER readings_append_only_u BEFORE UPDATE ON readings
    FOR EACH ROW EXECUTE FUNCTION pollwatch_append_only();
CREATE TRIGGER readings_append_only_d BEFORE DELETE ON readings
    FOR EACH ROW EXECUTE FUNCTION pollwatch_readings_retention();
-- TRUNCATE skips row triggers: refuse it per statement.
CREATE TRIGGER alert_events_no_truncate BEFORE TRUNCATE ON alert_events
    FOR EACH STATEMENT EXECUTE FUNCTION pollwatch_append_only();
CREATE TRIGGER findings_no_truncate BEFORE TRUNCATE ON findings
    FOR EACH STATEMENT EXECUTE FUNCTION pollwatch_append_only();
CREATE TRIGGER readings_no_truncate BEFORE TRUNCATE ON readings
    FOR EACH STATEMENT EXECUTE FUNCTION pollwatch_append_only();
