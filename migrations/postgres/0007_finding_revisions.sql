-- Late data re-judges a closed period (src/rules/rejudge.rs): a finding keeps
-- its natural key and row, and takes the new verdict; what it said before is
-- kept here, append-only, with the reason. A verdict no longer found (a day
-- judged missing whose hours came late) is marked superseded, never deleted.
ALTER TABLE findings ADD COLUMN revision BIGINT NOT NULL DEFAULT 0;
ALTER TABLE findings ADD COLUMN superseded_at BIGINT;
ALTER TABLE findings ADD COLUMN superseded_reason TEXT;
CREATE INDEX findings_period ON findings (enterprise, location, factor, window_start);

CREATE TABLE finding_revisions (
    id            BIGSERIAL PRIMARY KEY,
    finding_id    BIGINT  NOT NULL REFERENCES findings (id),
    at            BIGINT  NOT NULL,
    reason        TEXT    NOT NULL,
    from_value    DOUBLE PRECISION,
    to_value      DOUBLE PRECISION,
    from_message  TEXT    NOT NULL,
    from_evidence TEXT    NOT NULL
);
CREATE INDEX finding_revisions_finding ON finding_revisions (finding_id);
