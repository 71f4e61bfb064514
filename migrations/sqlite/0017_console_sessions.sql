-- Console sessions in the store, so a restart or a failover to another node does
-- not log the duty officers out (issue #22).
--
-- key:  SHA-256 of the session id (hex); the id itself, the cookie's value, is
--       never stored.
-- seal: SHA-256 of the id and the fingerprint of the token's secret (hex): the
--       session is valid only while that token, with that secret, is configured,
--       and a reader of this table learns nothing about any token.
-- csrf: the session's CSRF token (the page needs it back).
CREATE TABLE console_sessions (
    key        TEXT   NOT NULL PRIMARY KEY,
    name       TEXT   NOT NULL,
    seal       TEXT   NOT NULL,
    csrf       TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX console_sessions_expires ON console_sessions (expires_at);
