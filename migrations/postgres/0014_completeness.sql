-- Issue #20: data completeness.
--
-- transmission_days: the daily figures a bureau is judged on, per outlet and limited
-- factor and local calendar day (COMPLETENESS.md): hours expected, received and
-- valid, and which hours were missing or invalid (comma-separated local hours, for
-- the evidence of a `low_transmission` finding). Written when a day closes and
-- rewritten (revision + 1) while backfill or late data can still change it (the
-- 10-day repair window); a month's report reads these rows, not raw readings.
CREATE TABLE transmission_days (
    enterprise    TEXT    NOT NULL,
    outlet        TEXT    NOT NULL,
    factor        TEXT    NOT NULL,
    day           TEXT    NOT NULL,
    expected      BIGINT  NOT NULL,
    received      BIGINT  NOT NULL,
    valid         BIGINT  NOT NULL,
    missing_hours TEXT    NOT NULL,
    invalid_hours TEXT    NOT NULL,
    computed_at   BIGINT  NOT NULL,
    revision      BIGINT  NOT NULL,
    PRIMARY KEY (enterprise, outlet, factor, day)
);
CREATE INDEX transmission_days_day ON transmission_days (day);

-- backfill_requests: every history request (反控, CN 2031/2051/2061 with
-- BeginTime/EndTime) sent to a logger and how it ended: the 9011 QnRtn, the 9012
-- ExeRtn, the readings it brought back. `state`: sent, refused (QnRtn ≠ 1), done,
-- no_data (ExeRtn 100: the hours are confirmed missing), failed (another ExeRtn),
-- timeout (no answer in time; asked again later with backoff).
CREATE TABLE backfill_requests (
    id           BIGSERIAL PRIMARY KEY,
    enterprise   TEXT    NOT NULL,
    outlet       TEXT    NOT NULL,
    mn           TEXT    NOT NULL,
    cn           TEXT    NOT NULL,
    begin_at     BIGINT  NOT NULL,
    end_at       BIGINT  NOT NULL,
    qn           TEXT    NOT NULL,
    attempt      BIGINT  NOT NULL,
    requested_at BIGINT  NOT NULL,
    state        TEXT    NOT NULL,
    qn_rtn       BIGINT,
    exe_rtn      BIGINT,
    readings     BIGINT  NOT NULL,
    finished_at  BIGINT,
    detail       TEXT    NOT NULL
);
CREATE INDEX backfill_requests_mn ON backfill_requests (mn, begin_at);
CREATE INDEX backfill_requests_enterprise ON backfill_requests (enterprise, requested_at);
