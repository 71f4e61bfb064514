-- Conflicting resends are evidence (issue 17). A reading resent for the same series
-- and time with a different value is recorded here with both values; the first
-- value stands and readings are never updated. Identical resends are not recorded.
-- The store fills it after an INSERT … ON CONFLICT DO NOTHING that skipped rows.
CREATE TABLE reading_conflicts (
    id              BIGSERIAL        PRIMARY KEY,
    series_id       BIGINT           NOT NULL,
    ts              BIGINT           NOT NULL,
    first_value     DOUBLE PRECISION NOT NULL,
    first_flag      TEXT             NOT NULL,
    first_source_id BIGINT           NOT NULL,
    first_received  BIGINT           NOT NULL,
    value           DOUBLE PRECISION NOT NULL,
    flag            TEXT             NOT NULL,
    source_id       BIGINT           NOT NULL,
    received        BIGINT           NOT NULL
);
CREATE INDEX reading_conflicts_series_ts ON reading_conflicts (series_id, ts);
