-- The number of enabled users, kept current by statement-level triggers, so
-- every status page can report the total without counting a million rows.

CREATE TABLE user_totals (
    id            boolean PRIMARY KEY DEFAULT true CHECK (id),
    enabled_users bigint NOT NULL
);
INSERT INTO user_totals (enabled_users) SELECT count(*) FROM users WHERE NOT disabled;

CREATE FUNCTION user_totals_after_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE user_totals SET enabled_users = enabled_users
        + (SELECT count(*) FROM inserted WHERE NOT disabled);
    RETURN NULL;
END;
$$;

CREATE FUNCTION user_totals_after_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE user_totals SET enabled_users = enabled_users
        + (SELECT count(*) FROM updated WHERE NOT disabled)
        - (SELECT count(*) FROM previous WHERE NOT disabled);
    RETURN NULL;
END;
$$;

CREATE FUNCTION user_totals_after_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE user_totals SET enabled_users = enabled_users
        - (SELECT count(*) FROM deleted WHERE NOT disabled);
    RETURN NULL;
END;
$$;

CREATE TRIGGER user_totals_insert AFTER INSERT ON users
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION user_totals_after_insert();
CREATE TRIGGER user_totals_update AFTER UPDATE ON users
    REFERENCING OLD TABLE AS previous NEW TABLE AS updated
    FOR EACH STATEMENT EXECUTE FUNCTION user_totals_after_update();
CREATE TRIGGER user_totals_delete AFTER DELETE ON users
    REFERENCING OLD TABLE AS deleted
    FOR EACH STATEMENT EXECUTE FUNCTION user_totals_after_delete();

-- Keyset pagination of enabled users by username.
CREATE INDEX users_enabled_by_username ON users (username) WHERE NOT disabled;
