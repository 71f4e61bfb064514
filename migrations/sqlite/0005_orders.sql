-- Production orders (stop / limit) issued at runtime through the API during a
-- heavy-pollution-weather response (POST /api/v1/orders). Config [[orders]] stay in
-- the enterprise files; these are the ones officers issue on the day. Nothing is
-- deleted: DELETE cancels, recording who and when, because findings that cite an
-- order must stay explainable in a penalty case.
CREATE TABLE orders (
    id            INTEGER PRIMARY KEY,
    enterprise    TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    start_at      INTEGER NOT NULL,
    start_offset  INTEGER NOT NULL,
    end_at        INTEGER NOT NULL,
    allowed_share REAL,
    meters        TEXT    NOT NULL,
    baseline_kw   REAL,
    grace_ms      INTEGER,
    reason        TEXT    NOT NULL,
    issued_by     TEXT    NOT NULL,
    issued_at     INTEGER NOT NULL,
    cancelled_by  TEXT,
    cancelled_at  INTEGER
);
CREATE INDEX orders_end ON orders (end_at);
