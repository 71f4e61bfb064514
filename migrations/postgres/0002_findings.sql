-- What the rules engine found (src/rules). The natural key (rule, enterprise,
-- location, factor, detail, window start) makes a replayed finding a no-op, so a
-- restart or a recovery never raises the same thing twice.
CREATE TABLE findings (
    id           BIGSERIAL PRIMARY KEY,
    natural_key  TEXT    NOT NULL UNIQUE,
    rule         TEXT    NOT NULL,
    severity     TEXT    NOT NULL,
    enterprise   TEXT    NOT NULL,
    location     TEXT    NOT NULL,
    factor       TEXT    NOT NULL,
    window_start BIGINT  NOT NULL,
    window_end   BIGINT  NOT NULL,
    at           BIGINT  NOT NULL,
    value        DOUBLE PRECISION,
    threshold    DOUBLE PRECISION,
    detail       TEXT    NOT NULL,
    message      TEXT    NOT NULL,
    evidence     TEXT    NOT NULL,
    created      BIGINT  NOT NULL
);
CREATE INDEX findings_enterprise_at ON findings (enterprise, at);

-- Hourly emission per pollutant and outlet (tonnes), so that the year-to-date
-- total against the permitted quantity survives a restart. A logger's -Cou value
-- replaces our C × Q estimate, never the reverse.
CREATE TABLE emission_hours (
    enterprise TEXT    NOT NULL,
    outlet     TEXT    NOT NULL,
    factor     TEXT    NOT NULL,
    hour       BIGINT  NOT NULL,
    tonnes     DOUBLE PRECISION    NOT NULL,
    source     TEXT    NOT NULL,
    PRIMARY KEY (enterprise, outlet, factor, hour)
);
