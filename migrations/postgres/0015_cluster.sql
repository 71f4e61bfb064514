-- Cluster mode (issue 22): several pollwatch nodes on one PostgreSQL database.
-- Why each piece is shaped this way: src/cluster/mod.rs.

-- Every node says it is alive here (a heartbeat every third of the lease).
CREATE TABLE cluster_nodes (
    node_id   TEXT PRIMARY KEY,
    started   TIMESTAMPTZ NOT NULL,
    heartbeat TIMESTAMPTZ NOT NULL,
    http      TEXT NOT NULL DEFAULT ''
);

-- Leases: 'leader' (rules, alerts, dispatcher) and 'line:<endpoint>' (one
-- polled line each). `epoch` grows by one at every change of holder (and when a
-- holder lost and re-took its lease): it is the fencing token. Times are the
-- database's clock, the one clock every node agrees on.
CREATE TABLE cluster_leases (
    name     TEXT PRIMARY KEY,
    holder   TEXT        NOT NULL,
    epoch    BIGINT      NOT NULL,
    since    TIMESTAMPTZ NOT NULL,
    expires  TIMESTAMPTZ NOT NULL,
    renewals BIGINT      NOT NULL DEFAULT 0
);

-- The committing transaction of each reading, for the leader's feed in commit
-- order. Added without a default first so existing rows are not rewritten (they
-- stay NULL and are never fed: they were judged before the upgrade), then the
-- default applies to every new row.
ALTER TABLE readings ADD COLUMN txid xid8;
ALTER TABLE readings ALTER COLUMN txid SET DEFAULT pg_current_xact_id();
CREATE INDEX readings_txid ON readings (txid, series_id, ts) WHERE txid IS NOT NULL;

-- How far the leader's rules engine has taken the feed (src/cluster/feed.rs);
-- one row, moved only by the leader (fenced below).
CREATE TABLE cluster_feed (
    name   TEXT PRIMARY KEY,
    txid   BIGINT NOT NULL,
    series BIGINT NOT NULL,
    ts     BIGINT NOT NULL
);

-- Fencing. A leader's engines write through connections opened with
-- `pollwatch.fence_node` and `pollwatch.fence_epoch` set (startup options);
-- every statement they run on a judged table first checks, in its own
-- transaction, that this node still holds the leader lease at that epoch and
-- that it has not expired — and takes a share lock on the lease row, so a
-- takeover (an UPDATE of that row) waits for the old leader's transaction to end
-- and nothing of the old term commits after the new term began. Connections
-- without the settings (single-node daemons, API writes on any node) pass.
CREATE FUNCTION pollwatch_fence() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    fence_node  TEXT := current_setting('pollwatch.fence_node', true);
    fence_epoch TEXT := current_setting('pollwatch.fence_epoch', true);
BEGIN
    IF fence_node IS NULL OR fence_node = '' THEN
        RETURN NULL;
    END IF;
    PERFORM 1 FROM cluster_leases l
     WHERE l.name = 'leader' AND l.holder = fence_node AND l.epoch = fence_epoch::BIGINT
       AND l.expires > clock_timestamp()
       FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'fenced: node % no longer holds the leader lease at epoch %', fence_node, fence_epoch
            USING ERRCODE = 'lock_not_available';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER cluster_feed_fence BEFORE INSERT OR UPDATE OR DELETE ON cluster_feed
    FOR EACH STATEMENT EXECUTE FUNCTION pollwatch_fence();
CREATE TRIGGER findings_fence BEFORE INSERT OR UPDATE OR DELETE ON findings
    FOR EACH STATEMENT EXECUTE FUNCTION pollwatch_fence();
CREATE TRIGGER finding_revisions_fence BEFORE INSERT OR UPDATE OR DELETE ON finding_revisions
    FOR EACH STATEMENT EXECUTE FUNCTION pollwatch_fence();
CREATE TRIGGER emission_hours_fence BEFORE INSERT OR UPDATE OR DELETE ON emission_hours
    FOR EACH STATEMENT EXECUTE FUNCTION pollwatch_fence();
CREATE TRIGGER alerts_fence BEFORE INSERT OR UPDATE OR DELETE ON alerts
    FOR EACH STATEMENT EXECUTE FUNCTION pollwatch_fence();
CREATE TRIGGER alert_findings_fence BEFORE INSERT OR UPDATE OR DELETE ON alert_findings
    FOR EACH STATEMENT EXECUTE FUNCTION pollwatch_fence();
CREATE TRIGGER alert_events_fence BEFORE INSERT OR UPDATE OR DELETE ON alert_events
    FOR EACH STATEMENT EXECUTE FUNCTION pollwatch_fence();
CREATE TRIGGER outbox_fence BEFORE INSERT OR UPDATE OR DELETE ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION pollwatch_fence();
CREATE TRIGGER notification_attempts_fence BEFORE INSERT OR UPDATE OR DELETE ON notification_attempts
    FOR EACH STATEMENT EXECUTE FUNCTION pollwatch_fence();

