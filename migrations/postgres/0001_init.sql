-- Same shape as the SQLite schema; see migrations/sqlite/0001_init.sql for the why.
CREATE TABLE series (
    id            BIGSERIAL PRIMARY KEY,
    enterprise    TEXT    NOT NULL,
    location_kind TEXT    NOT NULL CHECK (location_kind IN ('outlet', 'meter')),
    location      TEXT    NOT NULL,
    factor        TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    stat          TEXT    NOT NULL,
    converted     BOOLEAN NOT NULL,
    unit          TEXT    NOT NULL,
    UNIQUE (enterprise, location_kind, location, factor, kind, stat, converted)
);

CREATE TABLE sources (
    id       BIGSERIAL PRIMARY KEY,
    protocol TEXT NOT NULL,
    device   TEXT NOT NULL,
    UNIQUE (protocol, device)
);

CREATE TABLE readings (
    series_id BIGINT           NOT NULL,
    ts        BIGINT           NOT NULL,
    value     DOUBLE PRECISION NOT NULL,
    flag      TEXT             NOT NULL,
    source_id BIGINT           NOT NULL,
    received  BIGINT           NOT NULL,
    PRIMARY KEY (series_id, ts)
);

CREATE TABLE dead_letters (
    id       BIGSERIAL PRIMARY KEY,
    at       BIGINT NOT NULL,
    protocol TEXT   NOT NULL,
    peer     TEXT   NOT NULL,
    reason   TEXT   NOT NULL,
    detail   TEXT   NOT NULL,
    raw      BYTEA  NOT NULL
);
CREATE INDEX dead_letters_at ON dead_letters (at);

CREATE TABLE device_status (
    id         BIGSERIAL PRIMARY KEY,
    at         BIGINT NOT NULL,
    enterprise TEXT   NOT NULL,
    device     TEXT   NOT NULL,
    status     TEXT   NOT NULL,
    detail     TEXT   NOT NULL
);
CREATE INDEX device_status_device_at ON device_status (enterprise, device, at);
