-- Conflicting resends are evidence (issue 17). A reading resent for the same series
-- and time with a different value is recorded here with both values; the first
-- value stands and readings are never updated. Identical resends are not recorded.
CREATE TABLE reading_conflicts (
    id              INTEGER PRIMARY KEY,
    series_id       INTEGER NOT NULL,
    ts              INTEGER NOT NULL,
    first_value     REAL    NOT NULL,
    first_flag      TEXT    NOT NULL,
    first_source_id INTEGER NOT NULL,
    first_received  INTEGER NOT NULL,
    value           REAL    NOT NULL,
    flag            TEXT    NOT NULL,
    source_id       INTEGER NOT NULL,
    received        INTEGER NOT NULL
);
CREATE INDEX reading_conflicts_series_ts ON reading_conflicts (series_id, ts);

-- New readings land in readings_recent; a resend of a reading already in either
-- tier is skipped here (RAISE(IGNORE) skips the row, not the statement), and
-- recorded above when its value differs. This also keeps a resend of compacted
-- history out of readings_recent.
CREATE TRIGGER readings_recent_resend BEFORE INSERT ON readings_recent
WHEN EXISTS (SELECT 1 FROM readings_recent WHERE ts = NEW.ts AND series_id = NEW.series_id)
  OR EXISTS (SELECT 1 FROM readings WHERE series_id = NEW.series_id AND ts = NEW.ts)
BEGIN
    INSERT INTO reading_conflicts (series_id, ts, first_value, first_flag, first_source_id,
                                   first_received, value, flag, source_id, received)
    SELECT NEW.series_id, NEW.ts, f.value, f.flag, f.source_id, f.received,
           NEW.value, NEW.flag, NEW.source_id, NEW.received
    FROM (SELECT value, flag, source_id, received, 0 AS tier FROM readings
           WHERE series_id = NEW.series_id AND ts = NEW.ts
          UNION ALL
          SELECT value, flag, source_id, received, 1 AS tier FROM readings_recent
           WHERE ts = NEW.ts AND series_id = NEW.series_id
          ORDER BY tier LIMIT 1) f
    WHERE f.value <> NEW.value;
    SELECT RAISE(IGNORE);
END;
