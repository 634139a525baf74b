-- The search of ListUserStatuses: every word of the query must start a word
-- of the username or of the display name, ignoring case and accents. Names
-- are folded once, when written, into users.search_text, which a trigram
-- index (next migration) serves (docs/design.md, "Search").
--
-- Both extensions are trusted since PostgreSQL 13: the database owner may
-- create them, no superuser needed (docs/operations.md).
CREATE EXTENSION IF NOT EXISTS unaccent WITH SCHEMA public;
CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;

-- Lower case without accents ("Élodie" -> "elodie"). unaccent() is only
-- STABLE (its dictionary could be edited); the dictionary is named here and
-- left as installed, which makes this IMMUTABLE, as an index needs. Names
-- are schema-qualified so it works whatever the caller's search_path.
CREATE FUNCTION presence_fold(text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
AS $$ SELECT lower(public.unaccent('public.unaccent'::regdictionary, $1)) $$;

-- Stored, not only indexed: each word is checked on every candidate row, and
-- folding costs far more than reading (docs/benchmarks.md, "Search"). A plain
-- column kept by a trigger rather than a generated one: adding it rewrites
-- nothing under an exclusive lock (sign-ins and listings go on reading users
-- during the fill below), and it is right whichever release writes a user.
ALTER TABLE users ADD COLUMN search_text text;

CREATE FUNCTION users_fold_names() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.search_text := presence_fold(NEW.username || ' ' || NEW.display_name);
    RETURN NEW;
END
$$;

CREATE TRIGGER users_search_text BEFORE INSERT OR UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION users_fold_names();

-- The existing users (the trigger folds them; about a minute at 1M users, with
-- row locks only: an account change waits meanwhile, reads do not).
UPDATE users SET search_text = NULL;
