//! The Redis key schema, the only place a key is spelled.
//!
//! The per-user keys are exactly `last_activity:<user id>` and
//! `last_logout:<user id>` (an operator checks them with `redis-cli GET`), and
//! `browsers:<user id>` (`redis-cli ZRANGE … 0 -1 WITHSCORES`), behind an
//! optional prefix. A prefix may not contain braces: in Redis Cluster they
//! would become a hash tag and pin every key to one slot.
//!
//! The presence index is the one key every ping writes: user ids scored by the
//! last moment that makes them online (their last ping, or their last login
//! when no logout followed it), so the online count is one `ZCOUNT` whatever
//! the threshold. Logins enter it when they happen (and from login_history,
//! which the admin service reconciles into it); a logout removes the user.
//! On a single Redis it
//! is one sorted set; on Redis Cluster one sorted set would be a hot key on
//! one master, so it is split into `CLUSTER_INDEX_SHARDS` sorted sets named
//! `presence_index:{<shard>}` (there the braces *are* a hash tag, chosen so the
//! shards land on different slots) and a user always goes to the same shard.

use redis::Cmd;
use uuid::Uuid;

/// How many sorted sets the presence index is split into on Redis Cluster.
/// Every process of a deployment must agree on it (a user's shard depends on
/// it), hence a constant rather than a setting; 16 spreads the index writes
/// over every master of clusters up to 16 masters.
pub const CLUSTER_INDEX_SHARDS: u16 = 16;

/// The most browsers kept per user: beyond, the one that pinged longest ago
/// is dropped, so a client inventing ids cannot grow a user's set.
pub const MAX_BROWSERS_PER_USER: usize = 32;

/// Why a key prefix was refused.
#[derive(Debug, thiserror::Error)]
#[error("the Redis key prefix must not contain '{{' or '}}' (they are Redis Cluster hash tags)")]
pub struct InvalidPrefix;

#[derive(Clone, Debug)]
pub struct RedisKeys {
    prefix: String,
    /// 1 on a single Redis (one unsuffixed index key), `CLUSTER_INDEX_SHARDS` on a cluster.
    index_shards: u16,
}

impl Default for RedisKeys {
    fn default() -> Self {
        Self {
            prefix: String::new(),
            index_shards: 1,
        }
    }
}

impl RedisKeys {
    /// The schema for a single Redis: one presence index key.
    pub fn new(prefix: impl Into<String>) -> Result<Self, InvalidPrefix> {
        let prefix = prefix.into();
        if prefix.contains(['{', '}']) {
            return Err(InvalidPrefix);
        }
        Ok(Self {
            prefix,
            index_shards: 1,
        })
    }

    /// The schema for Redis Cluster: the presence index split into shards.
    pub fn for_cluster(prefix: impl Into<String>) -> Result<Self, InvalidPrefix> {
        Ok(Self {
            index_shards: CLUSTER_INDEX_SHARDS,
            ..Self::new(prefix)?
        })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Unix seconds of the user's last ping; expires after 2 × threshold.
    pub fn last_activity(&self, user_id: Uuid) -> String {
        format!("{}last_activity:{user_id}", self.prefix)
    }

    /// A `SCAN`/`KEYS` pattern matching every user's `last_activity` key.
    pub fn last_activity_pattern(&self) -> String {
        format!("{}last_activity:*", self.prefix)
    }

    /// Unix seconds of the user's last logout; expires after 2 × threshold.
    pub fn last_logout(&self, user_id: Uuid) -> String {
        format!("{}last_logout:{user_id}", self.prefix)
    }

    /// The user's browsers seen lately: a sorted set of browser ids (random,
    /// chosen by each browser) scored by their last ping (Unix seconds). It
    /// holds at most `MAX_BROWSERS_PER_USER` entries, drops those older than
    /// the threshold at every ping, and expires with `last_activity`.
    pub fn browsers(&self, user_id: Uuid) -> String {
        format!("{}browsers:{user_id}", self.prefix)
    }

    /// With idle detection on: the user's browsers whose last ping reported
    /// recent input, scored by that ping (Unix seconds). Bounded and expiring
    /// as `browsers` is; it holds the present state, never a history.
    pub fn browsers_with_input(&self, user_id: Uuid) -> String {
        format!("{}browsers_with_input:{user_id}", self.prefix)
    }

    /// The sorted set holding `user_id` in the away index: with idle
    /// detection on, the users whose last ping found none of their browsers
    /// with recent input, scored by that ping. Sharded like the presence
    /// index.
    pub fn away_index_for(&self, user_id: Uuid) -> String {
        self.sharded("away_index", index_shard(user_id, self.index_shards))
    }

    /// Every sorted set of the away index.
    pub fn away_index_shards(&self) -> Vec<String> {
        (0..self.index_shards)
            .map(|shard| self.sharded("away_index", shard))
            .collect()
    }

    /// Present while the token `jti` is revoked (until the token's expiry).
    pub fn revoked_token(&self, jti: &str) -> String {
        format!("{}revoked_token:{jti}", self.prefix)
    }

    /// Unix seconds of the user's last disabling: every token of theirs
    /// issued at or before it is refused (until the longest token lifetime
    /// has passed, when none can be left).
    pub fn revoked_before(&self, user_id: Uuid) -> String {
        format!("{}revoked_before:{user_id}", self.prefix)
    }

    /// Present once Redis holds every revocation recorded in PostgreSQL
    /// (revoked tokens and disabled users): a Redis that lost its data lacks
    /// it, and a token cannot be vouched for by Redis until the activity
    /// service has put the revocations back.
    pub fn revocations_complete(&self) -> String {
        format!("{}revocations_complete", self.prefix)
    }

    /// The sorted set holding `user_id` in the presence index: user ids scored
    /// by their last ping or login not followed by a logout (Unix seconds),
    /// which answers "who is online" and the counts without a scan.
    pub fn presence_index_for(&self, user_id: Uuid) -> String {
        self.index_shard_key(index_shard(user_id, self.index_shards))
    }

    /// The whole presence index, for code that only ever runs against a
    /// single Redis (the benchmarks' data loader). A cluster has no such key:
    /// use `presence_index_for` and `presence_index_shards` there.
    pub fn presence_index(&self) -> String {
        debug_assert_eq!(self.index_shards, 1, "the presence index is sharded");
        self.index_shard_key(0)
    }

    /// Every sorted set of the presence index, which readers query together.
    pub fn presence_index_shards(&self) -> Vec<String> {
        (0..self.index_shards)
            .map(|shard| self.index_shard_key(shard))
            .collect()
    }

    /// A `SCAN`/`KEYS` pattern matching every shard of the presence index
    /// on a cluster.
    pub fn presence_index_shards_pattern(&self) -> String {
        format!("{}presence_index:*", self.prefix)
    }

    fn index_shard_key(&self, shard: u16) -> String {
        self.sharded("presence_index", shard)
    }

    /// `name` as one key on a single Redis, or as shard `shard` of it (with
    /// the shard as hash tag) on a cluster.
    fn sharded(&self, name: &str, shard: u16) -> String {
        if self.index_shards == 1 {
            format!("{}{name}", self.prefix)
        } else {
            format!("{}{name}:{{{shard}}}", self.prefix)
        }
    }

    /// Present once the presence index holds every recent login of
    /// login_history, one per index shard (beside it, in the same slot): a
    /// Redis that lost its data (restarted without persistence, flushed)
    /// lacks it, which tells the admin service to put the logins back.
    pub fn presence_index_complete(&self) -> Vec<String> {
        (0..self.index_shards)
            .map(|shard| self.sharded("presence_index_complete", shard))
            .collect()
    }

    /// `ZADD GT` of `user_id` at `at` (Unix seconds) in the presence index:
    /// an entry only moves forward, so a ping or login stamped by a process
    /// whose clock is a little behind never makes a user look older.
    pub fn presence_index_entry(&self, user_id: Uuid, at: i64) -> Cmd {
        let mut command = Cmd::new();
        command
            .arg("ZADD")
            .arg(self.presence_index_for(user_id))
            .arg("GT")
            .arg(at)
            .arg(user_id.to_string());
        command
    }

    /// Pub/sub channel announcing logins and logouts to status watchers.
    pub fn status_channel(&self) -> String {
        format!("{}status_events", self.prefix)
    }
}

/// The index shard of a user: FNV-1a over the id's 16 bytes, modulo the
/// shard count. Spelled out rather than `std::hash`, whose output may change
/// between Rust releases: every process, old or new, must pick the same shard.
/// All the bytes are hashed because some UUID versions keep constant bits
/// (v1's node id) where others keep random ones.
pub fn index_shard(user_id: Uuid, shards: u16) -> u16 {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = user_id.as_bytes().iter().fold(FNV_OFFSET, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(FNV_PRIME)
    });
    (hash % u64::from(shards.max(1))) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_documented_schema() {
        let id = Uuid::parse_str("6f1c2a4e-8a0b-4c1d-9e2f-0a1b2c3d4e5f").unwrap();
        let keys = RedisKeys::default();
        assert_eq!(
            keys.last_activity(id),
            "last_activity:6f1c2a4e-8a0b-4c1d-9e2f-0a1b2c3d4e5f"
        );
        assert_eq!(
            keys.last_logout(id),
            "last_logout:6f1c2a4e-8a0b-4c1d-9e2f-0a1b2c3d4e5f"
        );
    }

    #[test]
    fn a_prefix_namespaces_every_key() {
        let id = Uuid::nil();
        let keys = RedisKeys::new("tenant1:").unwrap();
        for key in [
            keys.last_activity(id),
            keys.last_logout(id),
            keys.browsers(id),
            keys.browsers_with_input(id),
            keys.away_index_for(id),
            keys.revoked_token("j"),
            keys.revoked_before(id),
            keys.revocations_complete(),
            keys.presence_index_for(id),
            keys.status_channel(),
        ]
        .into_iter()
        .chain(keys.presence_index_complete())
        {
            assert!(key.starts_with("tenant1:"), "{key}");
        }
        let sharded = RedisKeys::for_cluster("tenant1:").unwrap();
        for key in sharded.presence_index_shards() {
            assert!(key.starts_with("tenant1:presence_index:{"), "{key}");
        }
    }

    #[test]
    fn a_single_redis_keeps_one_unsharded_index() {
        let keys = RedisKeys::new("p:").unwrap();
        assert_eq!(keys.presence_index_for(Uuid::new_v4()), "p:presence_index");
        assert_eq!(keys.presence_index(), "p:presence_index");
        assert_eq!(keys.presence_index_shards(), ["p:presence_index"]);
    }

    #[test]
    fn on_a_cluster_the_index_is_split_into_hash_tagged_shards() {
        let keys = RedisKeys::for_cluster("").unwrap();
        let shards = keys.presence_index_shards();
        assert_eq!(shards.len(), usize::from(CLUSTER_INDEX_SHARDS));
        assert_eq!(shards[0], "presence_index:{0}");
        assert_eq!(shards[15], "presence_index:{15}");
        // A user's shard is one of them, and the per-user keys stay unbraced.
        let id = Uuid::new_v4();
        assert!(shards.contains(&keys.presence_index_for(id)));
        // The away index is sharded the same way, so a user's two entries share a slot.
        assert_eq!(
            keys.away_index_for(id)
                .replace("away_index", "presence_index"),
            keys.presence_index_for(id)
        );
        assert!(!keys.last_activity(id).contains('{'));
    }

    #[test]
    fn a_users_shard_is_stable_across_processes_and_releases() {
        // Pinned values: changing the hash would strand index entries written
        // by processes still running the old one.
        let id = Uuid::parse_str("6f1c2a4e-8a0b-4c1d-9e2f-0a1b2c3d4e5f").unwrap();
        assert_eq!(index_shard(Uuid::nil(), 16), 5);
        assert_eq!(index_shard(id, 16), 6);
        assert_eq!(index_shard(id, 1), 0);
    }

    #[test]
    fn users_spread_evenly_over_the_shards() {
        let mut counts = [0u32; CLUSTER_INDEX_SHARDS as usize];
        for n in 0..16_000u128 {
            // Sequential ids are the worst case for a weak hash.
            counts[usize::from(index_shard(Uuid::from_u128(n), CLUSTER_INDEX_SHARDS))] += 1;
        }
        for (shard, count) in counts.iter().enumerate() {
            assert!(
                (800..=1200).contains(count),
                "shard {shard}: {count} of 16000"
            );
        }
    }
    #[test]
    fn a_prefix_with_hash_tag_braces_is_refused() {
        assert!(RedisKeys::new("a{b}:").is_err());
    }
}
