-- Revocations recorded in PostgreSQL, so a Redis that lost its data (flushed,
-- failed over, evicted) cannot bring a signed-out token back, and so a
-- disabled user's tokens end wherever they are checked.

-- A logout row names the token it revoked and when that token expires (the
-- activity service puts the still-valid ones back into Redis from here).
ALTER TABLE login_history
    ADD COLUMN token_id         text,
    ADD COLUMN token_expires_at timestamptz,
    ADD CONSTRAINT login_history_revoked_token CHECK (
        (token_id IS NULL) = (token_expires_at IS NULL)
        AND (token_id IS NULL OR (event = 'logout' AND char_length(token_id) BETWEEN 1 AND 128))
    -- Existing rows have neither column: checking them would only hold the
    -- table's lock for a scan.
    ) NOT VALID;
-- Is this token revoked? (one row per token: a retried logout adds no second row)
CREATE UNIQUE INDEX login_history_by_token_id
    ON login_history (token_id) WHERE token_id IS NOT NULL;
-- The revocations still in force, and those written since a row id.
CREATE INDEX login_history_revocations_by_expiry
    ON login_history (token_expires_at, id) WHERE token_id IS NOT NULL;
CREATE INDEX login_history_revocations_by_row
    ON login_history (id) WHERE token_id IS NOT NULL;

-- When the account was last disabled: its tokens issued at or before then
-- are refused, even after it is enabled again. Kept by a trigger, so an
-- account disabled by a plain UPDATE counts as much as one disabled by the CLI.
ALTER TABLE users ADD COLUMN disabled_at timestamptz;
UPDATE users SET disabled_at = now() WHERE disabled;

CREATE FUNCTION users_note_disabling() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.disabled AND (TG_OP = 'INSERT' OR NOT OLD.disabled) THEN
        -- The moment of the change itself, not of its transaction's start.
        NEW.disabled_at := clock_timestamp();
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER users_disabling BEFORE INSERT OR UPDATE OF disabled ON users
    FOR EACH ROW EXECUTE FUNCTION users_note_disabling();

CREATE INDEX users_by_disabled_at ON users (disabled_at) WHERE disabled_at IS NOT NULL;
