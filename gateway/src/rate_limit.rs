//! Token-bucket rate limits, kept per key (a user id or a client address) in
//! this process; and the users named by bearer tokens, remembered once
//! verified, so the per-user limit checks a token's signature once, not on
//! every ping. Each gateway replica limits on its own: the limits guard the
//! services from floods, they are not an exact global quota.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use presence_core::token::TokenVerifier;
use uuid::Uuid;

/// Beyond this many tracked keys, full buckets (idle keys) are dropped; if
/// none is idle, a new key is refused until some are (at most one sweep a
/// second, so a flood of new keys does not make every call scan the map).
const MAX_TRACKED_KEYS: usize = 100_000;
const SWEEP_AT_MOST_EVERY: Duration = Duration::from_secs(1);

pub struct RateLimiter<K> {
    buckets: Mutex<Buckets<K>>,
    capacity: f64,
    refill_per_second: f64,
    max_keys: usize,
}

struct Buckets<K> {
    by_key: HashMap<K, Bucket>,
    last_sweep: Option<Instant>,
}

// Not the keys: they are users and client addresses, and there may be 100,000 of them.
impl<K> std::fmt::Debug for RateLimiter<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = f.debug_struct("RateLimiter");
        // `try_lock`: printing must never wait for, or deadlock on, the lock.
        match self.buckets.try_lock() {
            Some(buckets) => out.field("tracked_keys", &buckets.by_key.len()),
            None => out.field("tracked_keys", &format_args!("(in use)")),
        };
        out.field("capacity", &self.capacity)
            .field("refill_per_second", &self.refill_per_second)
            .field("max_keys", &self.max_keys)
            .finish()
    }
}

/// The key of a client address for the per-address limits: an IPv4 address
/// as it is, an IPv6 address by its /64.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !((1u128 << 64) - 1))),
        v4 => v4,
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl<K: Hash + Eq + Copy> RateLimiter<K> {
    /// Allows `allowance` calls per `window`, refilled continuously.
    pub fn new(allowance: u32, window: Duration) -> Self {
        Self::with_max_keys(allowance, window, MAX_TRACKED_KEYS)
    }

    fn with_max_keys(allowance: u32, window: Duration, max_keys: usize) -> Self {
        let capacity = f64::from(allowance.max(1));
        Self {
            buckets: Mutex::new(Buckets {
                by_key: HashMap::new(),
                last_sweep: None,
            }),
            capacity,
            refill_per_second: capacity / window.as_secs_f64().max(0.001),
            max_keys,
        }
    }

    /// Takes one token for `key`; false when its allowance is used up.
    pub fn allow(&self, key: K) -> bool {
        self.allow_at(key, Instant::now())
    }

    fn allow_at(&self, key: K, now: Instant) -> bool {
        let mut guard = self.buckets.lock();
        let Buckets { by_key, last_sweep } = &mut *guard;
        if by_key.len() >= self.max_keys && !by_key.contains_key(&key) {
            let may_sweep = last_sweep
                .is_none_or(|swept| now.saturating_duration_since(swept) >= SWEEP_AT_MOST_EVERY);
            if may_sweep {
                *last_sweep = Some(now);
                let (capacity, rate) = (self.capacity, self.refill_per_second);
                by_key.retain(|_, bucket| {
                    bucket.tokens
                        + now.saturating_duration_since(bucket.updated).as_secs_f64() * rate
                        < capacity
                });
            }
            if by_key.len() >= self.max_keys {
                return false;
            }
        }
        let bucket = by_key.entry(key).or_insert(Bucket {
            tokens: self.capacity,
            updated: now,
        });
        let refilled =
            now.saturating_duration_since(bucket.updated).as_secs_f64() * self.refill_per_second;
        bucket.tokens = (bucket.tokens + refilled).min(self.capacity);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Beyond this many remembered tokens, expired ones are forgotten (and all
/// of them if none has expired): at most a few megabytes.
const MAX_KNOWN_TOKENS: usize = 20_000;

/// The users named by valid bearer tokens, remembered until the tokens expire.
pub struct KnownTokens {
    verifier: TokenVerifier,
    known: Mutex<HashMap<Box<str>, Known, SignatureTail>>,
}

// Never the tokens themselves: each one is a bearer credential.
impl std::fmt::Debug for KnownTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = f.debug_struct("KnownTokens");
        out.field("verifier", &self.verifier);
        // `try_lock`: printing must never wait for, or deadlock on, the lock.
        match self.known.try_lock() {
            Some(known) => out.field("known", &known.len()),
            None => out.field("known", &format_args!("(in use)")),
        };
        out.finish()
    }
}

/// Hashes a token by its last bytes only: they are its signature's, which
/// only the signing key produces, so they tell tokens apart as well as the
/// whole token would, at a fraction of the cost. Only verified tokens are
/// stored, and the seed differs per process, so nobody can line up
/// colliding entries.
#[derive(Clone)]
struct SignatureTail {
    seed: u64,
}

struct TailHasher(u64);

impl std::hash::BuildHasher for SignatureTail {
    type Hasher = TailHasher;

    fn build_hasher(&self) -> TailHasher {
        TailHasher(self.seed)
    }
}

impl std::hash::Hasher for TailHasher {
    fn write(&mut self, bytes: &[u8]) {
        let tail = &bytes[bytes.len().saturating_sub(16)..];
        for chunk in tail.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[derive(Debug, Clone, Copy)]
struct Known {
    user_id: Uuid,
    expires_at: i64,
}

impl KnownTokens {
    pub fn new(verifier: TokenVerifier) -> Self {
        Self {
            verifier,
            known: Mutex::new(HashMap::with_hasher(SignatureTail {
                seed: rand::random(),
            })),
        }
    }

    /// The user `token` names, if it is valid now (signature, issuer, expiry;
    /// revocation is the services' to check).
    pub fn user_of(&self, token: &str) -> Option<Uuid> {
        self.user_at(token, chrono::Utc::now().timestamp())
    }

    fn user_at(&self, token: &str, now: i64) -> Option<Uuid> {
        let remembered = self.known.lock().get(token).copied();
        if let Some(known) = remembered
            && known.expires_at > now
        {
            return Some(known.user_id);
        }
        let caller = self
            .verifier
            .verify(token)
            .ok()
            .filter(|caller| caller.expires_at > now)?;
        let mut known = self.known.lock();
        if known.len() >= MAX_KNOWN_TOKENS {
            known.retain(|_, token| token.expires_at > now);
            if known.len() >= MAX_KNOWN_TOKENS {
                known.clear();
            }
        }
        known.insert(
            token.into(),
            Known {
                user_id: caller.user_id,
                expires_at: caller.expires_at,
            },
        );
        Some(caller.user_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_allowance_is_spent_then_refilled() {
        let limiter = RateLimiter::new(2, Duration::from_secs(2));
        let start = Instant::now();
        assert!(limiter.allow_at('a', start));
        assert!(limiter.allow_at('a', start));
        assert!(!limiter.allow_at('a', start));
        assert!(limiter.allow_at('b', start), "keys are limited separately");
        assert!(limiter.allow_at('a', start + Duration::from_secs(1)));
        assert!(!limiter.allow_at('a', start + Duration::from_secs(1)));
    }

    #[test]
    fn the_tracked_keys_stay_bounded_when_none_is_idle() {
        let limiter = RateLimiter::with_max_keys(2, Duration::from_secs(60), 3);
        let start = Instant::now();
        for key in 0..3 {
            assert!(limiter.allow_at(key, start));
        }
        assert!(
            !limiter.allow_at(3, start),
            "a new key waits while none is idle"
        );
        assert!(
            limiter.allow_at(0, start),
            "known keys keep their allowance"
        );
        let later = start + Duration::from_secs(61);
        assert!(
            limiter.allow_at(3, later),
            "idle buckets are dropped for new keys"
        );
        assert!(limiter.buckets.lock().by_key.len() <= 3);
    }

    #[test]
    fn an_ipv6_client_is_limited_by_its_slash_64() {
        let key = |text: &str| address_key(text.parse().unwrap());
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("192.0.2.1"), "192.0.2.1".parse::<IpAddr>().unwrap());
        assert_eq!(
            key("::ffff:192.0.2.1"),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn a_verified_token_is_remembered_until_it_expires_and_a_forged_one_never() {
        use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
        use presence_core::token::{Role, TokenIssuer};
        const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
        let issuer = TokenIssuer::new(
            Algorithm::HS256,
            EncodingKey::from_secret(SECRET),
            "presence",
            60,
        );
        let verifier = TokenVerifier::new(
            Algorithm::HS256,
            DecodingKey::from_secret(SECRET),
            "presence",
        );
        let known = KnownTokens::new(verifier);
        let now = chrono::Utc::now().timestamp();
        let user = Uuid::new_v4();
        let token = issuer.issue(user, Role::User, now).unwrap();

        assert_eq!(known.user_at(&token.token, now), Some(user));
        assert_eq!(known.user_at(&token.token, now + 30), Some(user));
        assert_eq!(
            known.user_at(&token.token, token.expires_at + 10),
            None,
            "expired: checked again, and refused"
        );
        let forged = format!("{}x", token.token);
        assert_eq!(known.user_at(&forged, now), None);

        let signature = token.token.rsplit('.').next().unwrap();
        let printed = format!("{known:?}");
        assert!(
            !printed.contains(signature),
            "a remembered token printed: {printed}"
        );
        assert!(printed.contains("known: 1"), "{printed}");
    }
}
