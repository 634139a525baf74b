-- How many users were online, one sample a minute, for the trend an
-- administrator reads. Counts only: who was online when is never kept.
CREATE TABLE online_counts (
    sampled_at timestamptz PRIMARY KEY,
    online     bigint NOT NULL CHECK (online >= 0),
    total      bigint NOT NULL CHECK (total >= 0)
);
