-- Alerts (issue 7): state, timeline with a hash chain, and the notification outbox,
-- written together in one transaction (invariant 3).
CREATE TABLE alerts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    akey        TEXT    NOT NULL,
    enterprise  TEXT    NOT NULL,
    location    TEXT    NOT NULL,
    factor      TEXT    NOT NULL,
    rule        TEXT    NOT NULL,
    severity    TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    opened_at   INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    count       INTEGER NOT NULL,
    value       REAL,
    threshold   REAL,
    message     TEXT    NOT NULL,
    facts       TEXT    NOT NULL,
    flapping    INTEGER NOT NULL DEFAULT 0,
    acked_by    TEXT,
    acked_at    INTEGER,
    resolved_by TEXT,
    resolved_at INTEGER
);
CREATE INDEX alerts_key_state ON alerts (akey, state);
CREATE INDEX alerts_state ON alerts (state, updated_at);

CREATE TABLE alert_findings (
    alert_id   INTEGER NOT NULL,
    finding_id INTEGER NOT NULL,
    PRIMARY KEY (alert_id, finding_id)
);

CREATE TABLE alert_events (
    alert_id  INTEGER NOT NULL,
    seq       INTEGER NOT NULL,
    at        INTEGER NOT NULL,
    kind      TEXT    NOT NULL,
    actor     TEXT    NOT NULL,
    detail    TEXT    NOT NULL,
    prev_hash TEXT    NOT NULL,
    hash      TEXT    NOT NULL,
    PRIMARY KEY (alert_id, seq)
);

CREATE TABLE outbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id   INTEGER NOT NULL,
    step       TEXT    NOT NULL,
    state      TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    sent_at    INTEGER,
    channel    TEXT,
    UNIQUE (alert_id, step)
);
CREATE INDEX outbox_state ON outbox (state, id);

CREATE TABLE notification_attempts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    outbox_id   INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    channel     TEXT    NOT NULL,
    recipients  TEXT    NOT NULL,
    alert_ids   TEXT    NOT NULL,
    result      TEXT    NOT NULL,
    code        TEXT,
    reason      TEXT,
    provider_id TEXT
);
CREATE INDEX notification_attempts_outbox ON notification_attempts (outbox_id);
