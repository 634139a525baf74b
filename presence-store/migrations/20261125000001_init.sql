-- The schema presence needs: accounts, the login history that the status
-- fallback reads, the activity settings and their audit trail.

CREATE TABLE users (
    id            uuid PRIMARY KEY,
    username      text NOT NULL UNIQUE CHECK (char_length(username) BETWEEN 1 AND 64),
    password_hash text NOT NULL,
    role          text NOT NULL CHECK (role IN ('user', 'admin', 'service')),
    display_name  text NOT NULL,
    disabled      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE login_history (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- NULL when the attempted username matches no account.
    user_id        uuid REFERENCES users (id) ON DELETE CASCADE,
    username       text NOT NULL,
    event          text NOT NULL CHECK (event IN ('login_success', 'login_failure', 'logout')),
    failure_reason text CHECK ((event = 'login_failure') = (failure_reason IS NOT NULL)),
    client_ip      inet,
    user_agent     text,
    occurred_at    timestamptz NOT NULL DEFAULT now()
);

-- "Last login / last logout of this user" is an index-only descent.
CREATE INDEX login_history_user_event_time
    ON login_history (user_id, event, occurred_at DESC)
    WHERE user_id IS NOT NULL;
-- Login throttling counts recent failures per username and per client address.
CREATE INDEX login_history_failures_by_username
    ON login_history (username, occurred_at DESC) WHERE event = 'login_failure';
CREATE INDEX login_history_failures_by_ip
    ON login_history (client_ip, occurred_at DESC) WHERE event = 'login_failure';
-- Recent logins, for the counts of users online by login_history alone.
CREATE INDEX login_history_recent_logins
    ON login_history (occurred_at DESC) WHERE event = 'login_success';

CREATE TABLE settings (
    -- A single row: the table exists so the setting is transactional and audited.
    id                boolean PRIMARY KEY DEFAULT true CHECK (id),
    threshold_minutes integer NOT NULL DEFAULT 15 CHECK (threshold_minutes BETWEEN 1 AND 1440),
    updated_at        timestamptz,
    updated_by        uuid REFERENCES users (id) ON DELETE SET NULL
);
INSERT INTO settings (id) VALUES (true);

CREATE TABLE settings_audit (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    setting       text NOT NULL,
    old_value     text NOT NULL,
    new_value     text NOT NULL,
    changed_by    uuid REFERENCES users (id) ON DELETE SET NULL,
    changed_at    timestamptz NOT NULL DEFAULT now()
);

-- Every replica listens on this channel, so a change is applied everywhere at once.
CREATE FUNCTION notify_settings_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('presence_settings_changed', NEW.threshold_minutes::text);
    RETURN NEW;
END;
$$;
CREATE TRIGGER settings_changed AFTER UPDATE ON settings
    FOR EACH ROW EXECUTE FUNCTION notify_settings_changed();
