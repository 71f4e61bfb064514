-- Alerts (issue 7): state, timeline with a hash chain, and the notification outbox,
-- written together in one transaction (invariant 3).
CREATE TABLE alerts (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    akey        TEXT    NOT NULL,
    enterprise  TEXT    NOT NULL,
    location    TEXT    NOT NULL,
    factor      TEXT    NOT NULL,
    rule        TEXT    NOT NULL,
    severity    TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    opened_at   BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    count       BIGINT NOT NULL,
    value       DOUBLE PRECISION,
    threshold   DOUBLE PRECISION,
    message     TEXT    NOT NULL,
    facts       TEXT    NOT NULL,
    flapping    BIGINT NOT NULL DEFAULT 0,
    acked_by    TEXT,
    acked_at    BIGINT,
    resolved_by TEXT,
    resolved_at BIGINT
);
CREATE INDEX alerts_key_state ON alerts (akey, state);
CREATE INDEX alerts_state ON alerts (state, updated_at);

CREATE TABLE alert_findings (
    alert_id   BIGINT NOT NULL,
    finding_id BIGINT NOT NULL,
    PRIMARY KEY (alert_id, finding_id)
);

CREATE TABLE alert_events (
    alert_id  BIGINT NOT NULL,
    seq       BIGINT NOT NULL,
    at        BIGINT NOT NULL,
    kind      TEXT    NOT NULL,
    actor     TEXT    NOT NULL,
    detail    TEXT    NOT NULL,
    prev_hash TEXT    NOT NULL,
    hash      TEXT    NOT NULL,
    PRIMARY KEY (alert_id, seq)
);

CREATE TABLE outbox (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id   BIGINT NOT NULL,
    step       TEXT    NOT NULL,
    state      TEXT    NOT NULL,
    created_at BIGINT NOT NULL,
    sent_at    BIGINT,
    channel    TEXT,
    UNIQUE (alert_id, step)
);
CREATE INDEX outbox_state ON outbox (state, id);

CREATE TABLE notification_attempts (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    outbox_id   BIGINT NOT NULL,
    at          BIGINT NOT NULL,
    channel     TEXT    NOT NULL,
    recipients  TEXT    NOT NULL,
    alert_ids   TEXT    NOT NULL,
    result      TEXT    NOT NULL,
    code        TEXT,
    reason      TEXT,
    provider_id TEXT
);
CREATE INDEX notification_attempts_outbox ON notification_attempts (outbox_id);
