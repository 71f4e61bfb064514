-- HJ 212-2025 RF=1: values a logger resends from its backlog are marked. The mark is
-- provenance, so it lives with the source a reading refers to (one more row per
-- logger that ever resends), not in the readings tables. SQLite cannot change a
-- UNIQUE constraint in place, so the small sources table is rebuilt with its ids.
CREATE TABLE sources_new (
    id       INTEGER PRIMARY KEY,
    protocol TEXT    NOT NULL,
    device   TEXT    NOT NULL,
    resend   INTEGER NOT NULL DEFAULT 0,
    UNIQUE (protocol, device, resend)
);
INSERT INTO sources_new (id, protocol, device) SELECT id, protocol, device FROM sources;
DROP TABLE sources;
ALTER TABLE sources_new RENAME TO sources;
