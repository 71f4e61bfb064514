-- An acknowledged alert nobody resolves within its escalation policy's
-- ack_timeout re-opens: escalation starts again from that instant (the cycle's
-- start), and its notification steps are numbered by the re-open count so they
-- are sent again rather than taken for the first cycle's.
ALTER TABLE alerts ADD COLUMN cycle_started_at BIGINT;
ALTER TABLE alerts ADD COLUMN reopens BIGINT NOT NULL DEFAULT 0;
