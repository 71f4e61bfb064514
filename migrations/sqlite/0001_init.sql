-- One row per time series: everything that identifies a reading except its time.
-- Readings refer to it by a small integer, which keeps the hot table narrow.
CREATE TABLE series (
    id            INTEGER PRIMARY KEY,
    enterprise    TEXT    NOT NULL,
    location_kind TEXT    NOT NULL CHECK (location_kind IN ('outlet', 'meter')),
    location      TEXT    NOT NULL,
    factor        TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    stat          TEXT    NOT NULL,
    converted     INTEGER NOT NULL,
    unit          TEXT    NOT NULL,
    UNIQUE (enterprise, location_kind, location, factor, kind, stat, converted)
);

CREATE TABLE sources (
    id       INTEGER PRIMARY KEY,
    protocol TEXT NOT NULL,
    device   TEXT NOT NULL,
    UNIQUE (protocol, device)
);

-- The primary key is the idempotency key: a resent reading is not stored twice.
-- Times are milliseconds since the Unix epoch, UTC.
CREATE TABLE readings (
    series_id INTEGER NOT NULL,
    ts        INTEGER NOT NULL,
    value     REAL    NOT NULL,
    flag      TEXT    NOT NULL,
    source_id INTEGER NOT NULL,
    received  INTEGER NOT NULL,
    PRIMARY KEY (series_id, ts)
) WITHOUT ROWID;

-- Input we could not accept, kept raw: it is part of the record too.
CREATE TABLE dead_letters (
    id       INTEGER PRIMARY KEY,
    at       INTEGER NOT NULL,
    protocol TEXT    NOT NULL,
    peer     TEXT    NOT NULL,
    reason   TEXT    NOT NULL,
    detail   TEXT    NOT NULL,
    raw      BLOB    NOT NULL
);
CREATE INDEX dead_letters_at ON dead_letters (at);

CREATE TABLE device_status (
    id         INTEGER PRIMARY KEY,
    at         INTEGER NOT NULL,
    enterprise TEXT    NOT NULL,
    device     TEXT    NOT NULL,
    status     TEXT    NOT NULL,
    detail     TEXT    NOT NULL
);
CREATE INDEX device_status_device_at ON device_status (enterprise, device, at);
