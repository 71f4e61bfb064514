-- New readings land here first, clustered by time, so a commit appends instead of
-- touching one B-tree page per series. The store moves them into `readings`
-- (clustered by series) in sorted runs; see src/store/sqlite.rs.
CREATE TABLE readings_recent (
    ts        INTEGER NOT NULL,
    series_id INTEGER NOT NULL,
    value     REAL    NOT NULL,
    flag      TEXT    NOT NULL,
    source_id INTEGER NOT NULL,
    received  INTEGER NOT NULL,
    PRIMARY KEY (ts, series_id)
) WITHOUT ROWID;
