-- Idle detection (« Absent »): off by default. Only the setting is stored
-- here; no history of anyone's idle time is kept anywhere.
ALTER TABLE settings
    ADD COLUMN idle_detection_enabled boolean NOT NULL DEFAULT false,
    ADD COLUMN idle_after_minutes integer NOT NULL DEFAULT 5
        CHECK (idle_after_minutes BETWEEN 1 AND 240);
