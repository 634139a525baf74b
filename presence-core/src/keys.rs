//! The Redis key schema, the only place a key is spelled.
//!
//! The per-user keys are exactly the story's `last_activity:<user id>` and
//! `last_logout:<user id>` (an operator checks them with `redis-cli GET`), behind
//! an optional prefix. A prefix may not contain braces: in Redis Cluster they
//! would become a hash tag and pin every key to one slot.

use uuid::Uuid;

/// Why a key prefix was refused.
#[derive(Debug, thiserror::Error)]
#[error("the Redis key prefix must not contain '{{' or '}}' (they are Redis Cluster hash tags)")]
pub struct InvalidPrefix;

#[derive(Clone, Debug, Default)]
pub struct RedisKeys {
    prefix: String,
}

impl RedisKeys {
    pub fn new(prefix: impl Into<String>) -> Result<Self, InvalidPrefix> {
        let prefix = prefix.into();
        if prefix.contains(['{', '}']) {
            return Err(InvalidPrefix);
        }
        Ok(Self { prefix })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Unix seconds of the user's last ping; expires after 2 × threshold.
    pub fn last_activity(&self, user_id: Uuid) -> String {
        format!("{}last_activity:{user_id}", self.prefix)
    }

    /// Unix seconds of the user's last logout; expires after 2 × threshold.
    pub fn last_logout(&self, user_id: Uuid) -> String {
        format!("{}last_logout:{user_id}", self.prefix)
    }

    /// Present while the token `jti` is revoked (until the token's expiry).
    pub fn revoked_token(&self, jti: &str) -> String {
        format!("{}revoked_token:{jti}", self.prefix)
    }

    /// Sorted set of user ids scored by their last ping (Unix seconds): the
    /// index that answers "who is online" and the counts without a scan.
    pub fn activity_index(&self) -> String {
        format!("{}activity_index", self.prefix)
    }

    /// Pub/sub channel announcing logins and logouts to status watchers.
    pub fn status_channel(&self) -> String {
        format!("{}status_events", self.prefix)
    }
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
            keys.revoked_token("j"),
            keys.activity_index(),
            keys.status_channel(),
        ] {
            assert!(key.starts_with("tenant1:"), "{key}");
        }
    }

    #[test]
    fn a_prefix_with_hash_tag_braces_is_refused() {
        assert!(RedisKeys::new("a{b}:").is_err());
    }
}
