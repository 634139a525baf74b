-- no-transaction
-- The trigram index of the users page's search (docs/design.md, "Search"):
-- a regular expression holding a word is answered from it. Built without
-- blocking the sign-ins and account changes that write users meanwhile
-- (hence outside a transaction).
CREATE INDEX CONCURRENTLY IF NOT EXISTS users_search_text
    ON users USING gin (search_text gin_trgm_ops) WHERE NOT disabled;
