-- Sign-in throttling counters. Each attempt is reserved here, in one short
-- transaction, before its password is checked, so parallel guesses cannot
-- all pass a count taken before any of them finished.
--
-- A row counts the failures of one scope:
--   'client'   one client address, whatever the username (username = '');
--   'pair'     one username from one client address;
--   'username' one username from every address (client = ''), for the backoff.
CREATE TABLE login_throttle (
    scope           text NOT NULL CHECK (scope IN ('client', 'pair', 'username')),
    username        text NOT NULL,
    client          text NOT NULL,
    -- Failures (and attempts being checked right now) since the counter
    -- last started again.
    failures        integer NOT NULL CHECK (failures >= 0),
    last_failure_at timestamptz NOT NULL,
    -- The counter starts again from zero after this; the purge deletes the row.
    expires_at      timestamptz NOT NULL,
    PRIMARY KEY (scope, username, client),
    CHECK ((scope = 'client') = (username = '')),
    CHECK ((scope = 'username') = (client = ''))
);

-- The purge finds expired counters without reading the live ones.
CREATE INDEX login_throttle_expiry ON login_throttle (expires_at);
