-- PostgreSQL roles for pollwatch (issue 18): the schema belongs to an owner role
-- that migrates and runs retention; the daemon runs as a role that may read and
-- append, but has no UPDATE, DELETE or TRUNCATE on the evidence tables
-- (alert_events, findings, finding_revisions, readings, retention_log) — on top
-- of the triggers that refuse those statements for anyone.
--
-- Run once as a superuser, after the schema is migrated (any pollwatch command
-- that opens the store, e.g. `pollwatch alerts list`, run with the owner's url).
-- Checked on PostgreSQL 15+: the daemon role then opens the store, writes, and
-- gets "permission denied" for UPDATE/DELETE on alert_events and readings, for
-- INSERT into retention_log, and "must be owner" for dropping a trigger.
--   psql -v ON_ERROR_STOP=1 -d pollwatch -f deploy/postgres-roles.sql
-- then point the daemon's [storage] url at pollwatch_daemon, and run
-- `pollwatch evidence retain` (and schema upgrades) with the owner's url.

CREATE ROLE pollwatch_owner LOGIN;           -- set a password or use peer auth
CREATE ROLE pollwatch_daemon LOGIN;          -- likewise

ALTER SCHEMA public OWNER TO pollwatch_owner;
DO $$
DECLARE t record;
BEGIN
    FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = 'public' LOOP
        EXECUTE format('ALTER TABLE public.%I OWNER TO pollwatch_owner', t.tablename);
    END LOOP;
    FOR t IN SELECT sequencename FROM pg_sequences WHERE schemaname = 'public' LOOP
        EXECUTE format('ALTER SEQUENCE public.%I OWNER TO pollwatch_owner', t.sequencename);
    END LOOP;
END $$;
ALTER VIEW public.findings_current OWNER TO pollwatch_owner;

-- CREATE on the schema only because sqlx runs `CREATE TABLE IF NOT EXISTS
-- _sqlx_migrations` at every start; tables the daemon does not own it cannot
-- alter, drop or strip of their triggers. Pending migrations (an upgrade) must
-- be applied as the owner first: any command that opens the store migrates it,
-- e.g. `pollwatch alerts list` with the owner's url.
GRANT USAGE, CREATE ON SCHEMA public TO pollwatch_daemon;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO pollwatch_daemon;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO pollwatch_daemon;
-- Working tables the daemon changes in place (alert state, the outbox, orders'
-- cancellation, emission hours' upserts, the recent alert board).
GRANT INSERT, UPDATE ON alerts, outbox, orders, emission_hours, series, sources TO pollwatch_daemon;
GRANT INSERT ON alert_findings, notification_attempts, dead_letters, device_status TO pollwatch_daemon;
-- Cluster mode (deploy/cluster.md): heartbeats, leases (the fence trigger's
-- FOR SHARE on the lease row needs UPDATE too), the leader's feed cursor.
GRANT INSERT, UPDATE ON cluster_nodes, cluster_leases, cluster_feed TO pollwatch_daemon;
-- Evidence: append only.
GRANT INSERT ON alert_events, findings, finding_revisions, readings TO pollwatch_daemon;
REVOKE UPDATE, DELETE, TRUNCATE ON alert_events, findings, finding_revisions, readings, retention_log FROM pollwatch_daemon;
-- sqlx records applied migrations; the daemon only reads that table.
REVOKE INSERT, UPDATE, DELETE ON _sqlx_migrations FROM pollwatch_daemon;
