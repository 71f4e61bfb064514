-- Evidence that holds up (issue 18): a keyed chain that also covers the alert's
-- own facts and a digest of the readings each finding was judged on; true actors;
-- append-only findings, readings and timelines; retention through one audited
-- command. See src/store/alerts/chain.rs and src/seal.rs.

-- Timeline rows: version 1 = the plain SHA-256 chain of before (still verified,
-- reported "not keyed"); version 2 = HMAC-SHA256 under key `key_id` ('' = no key
-- was configured: plain SHA-256, reported "not keyed"), over the row, the alert's
-- facts after it (`facts`) and the readings digest (`readings_digest`, with the
-- readings themselves in `readings` so that verify can name what changed).
ALTER TABLE alert_events ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE alert_events ADD COLUMN key_id TEXT NOT NULL DEFAULT '';
ALTER TABLE alert_events ADD COLUMN on_behalf_of TEXT;
ALTER TABLE alert_events ADD COLUMN facts TEXT NOT NULL DEFAULT '';
ALTER TABLE alert_events ADD COLUMN readings_digest TEXT NOT NULL DEFAULT '';
ALTER TABLE alert_events ADD COLUMN readings TEXT NOT NULL DEFAULT '';
-- The daily anchor reads a day's rows by time.
CREATE INDEX alert_events_at ON alert_events (at);

-- The recorded actor is the authenticated token's (or console session's) name;
-- what a client says in `by` is kept apart: alert_events.on_behalf_of, and here.
ALTER TABLE orders ADD COLUMN on_behalf_of TEXT;
ALTER TABLE orders ADD COLUMN cancelled_for TEXT;

-- A finding's row is its first verdict and never changes; each revision is a new
-- row here carrying the verdict it changed to (`to_*`) or `superseded`.
ALTER TABLE finding_revisions ADD COLUMN to_threshold REAL;
ALTER TABLE finding_revisions ADD COLUMN to_message TEXT;
ALTER TABLE finding_revisions ADD COLUMN to_evidence TEXT;
ALTER TABLE finding_revisions ADD COLUMN superseded INTEGER NOT NULL DEFAULT 0;
-- Revisions recorded before: the finding row holds the latest verdict.
UPDATE finding_revisions SET
    to_threshold = (SELECT f.threshold FROM findings f WHERE f.id = finding_id),
    to_message = (SELECT f.message FROM findings f WHERE f.id = finding_id),
    to_evidence = (SELECT f.evidence FROM findings f WHERE f.id = finding_id),
    to_value = (SELECT f.value FROM findings f WHERE f.id = finding_id),
    superseded = (SELECT f.superseded_at IS NOT NULL FROM findings f WHERE f.id = finding_id)
WHERE id IN (SELECT max(id) FROM finding_revisions GROUP BY finding_id);

-- Findings as they stand now: the first verdict, or the latest revision's.
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

-- Retention: `pollwatch evidence retain` appends a 'start' row, deletes readings
-- older than `before_ms`, and appends a 'done' row with the count. The triggers
-- below let a reading be deleted only while the latest row is a covering 'start'.
CREATE TABLE retention_log (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        INTEGER NOT NULL,
    kind      TEXT    NOT NULL CHECK (kind IN ('start', 'done')),
    before_ms INTEGER NOT NULL,
    actor     TEXT    NOT NULL,
    rows      INTEGER
);

CREATE TRIGGER alert_events_append_only_u BEFORE UPDATE ON alert_events
BEGIN SELECT RAISE(ABORT, 'alert_events is append-only: UPDATE refused'); END;
CREATE TRIGGER alert_events_append_only_d BEFORE DELETE ON alert_events
BEGIN SELECT RAISE(ABORT, 'alert_events is append-only: DELETE refused'); END;
CREATE TRIGGER findings_append_only_u BEFORE UPDATE ON findings
BEGIN SELECT RAISE(ABORT, 'findings is append-only: UPDATE refused'); END;
CREATE TRIGGER findings_append_only_d BEFORE DELETE ON findings
BEGIN SELECT RAISE(ABORT, 'findings is append-only: DELETE refused'); END;
CREATE TRIGGER finding_revisions_append_only_u BEFORE UPDATE ON finding_revisions
BEGIN SELECT RAISE(ABORT, 'finding_revisions is append-only: UPDATE refused'); END;
CREATE TRIGGER finding_revisions_append_only_d BEFORE DELETE ON finding_revisions
BEGIN SELECT RAISE(ABORT, 'finding_revisions is append-only: DELETE refused'); END;
CREATE TRIGGER retention_log_append_only_u BEFORE UPDATE ON retention_log
BEGIN SELECT RAISE(ABORT, 'retention_log is append-only: UPDATE refused'); END;
CREATE TRIGGER retention_log_append_only_d BEFORE DELETE ON retention_log
BEGIN SELECT RAISE(ABORT, 'retention_log is append-only: DELETE refused'); END;
CREATE TRIGGER readings_append_only_u BEFORE UPDATE ON readings
BEGIN SELECT RAISE(ABORT, 'readings is append-only: UPDATE refused'); END;
CREATE TRIGGER readings_append_only_d BEFORE DELETE ON readings
WHEN NOT EXISTS (SELECT 1 FROM retention_log l
                 WHERE l.id = (SELECT max(id) FROM retention_log)
                   AND l.kind = 'start' AND OLD.ts < l.before_ms)
BEGIN SELECT RAISE(ABORT, 'readings is append-only: DELETE refused (retention goes through pollwatch evidence retain)'); END;
-- The recent tier moves rows into `readings`: a recent row may go only once
-- its (series, time) is archived (or by retention).
CREATE TRIGGER readings_recent_append_only_u BEFORE UPDATE ON readings_recent
BEGIN SELECT RAISE(ABORT, 'readings_recent is append-only: UPDATE refused'); END;
CREATE TRIGGER readings_recent_append_only_d BEFORE DELETE ON readings_recent
WHEN NOT EXISTS (SELECT 1 FROM readings a WHERE a.series_id = OLD.series_id AND a.ts = OLD.ts)
 AND NOT EXISTS (SELECT 1 FROM retention_log l
                 WHERE l.id = (SELECT max(id) FROM retention_log)
                   AND l.kind = 'start' AND OLD.ts < l.before_ms)
BEGIN SELECT RAISE(ABORT, 'readings_recent: DELETE refused (a recent reading leaves only into the archive, or by pollwatch evidence retain)'); END;
