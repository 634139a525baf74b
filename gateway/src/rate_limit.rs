//! Rate limits (governor's GCRA, a token bucket in effect), kept per key (a
//! user id or a client address) in this process; and the users named by
//! bearer tokens, remembered once verified, so the per-user limit checks a
//! token's signature once, not on every ping. Each gateway replica limits on
//! its own: the limits guard the services from floods, they are not an exact
//! global quota.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::{Quota, RateLimiter as Gcra};
use presence_core::token::TokenVerifier;
use uuid::Uuid;

/// Beyond this many tracked keys, idle ones (their allowance whole again) are
/// dropped; if none is idle, a new key is refused until some are (at most one
/// sweep a second, so a flood of new keys does not make every call scan the map).
const MAX_TRACKED_KEYS: usize = 100_000;
const SWEEP_AT_MOST_EVERY: Duration = Duration::from_secs(1);

/// An allowance per key (governor's keyed GCRA, lock-free), with a bound on
/// the keys it tracks.
pub struct RateLimiter<K: Hash + Eq + Clone, C: Clock = DefaultClock> {
    limiter: Gcra<K, BoundedStore<K>, C, NoOpMiddleware<C::Instant>>,
    clock: C,
    last_sweep: Mutex<Option<C::Instant>>,
    quota: Quota,
    max_keys: usize,
}

// Not the keys: they are users and client addresses, and there may be 100,000 of them.
impl<K: Hash + Eq + Clone, C: Clock> std::fmt::Debug for RateLimiter<K, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("tracked_keys", &self.limiter.len())
            .field("capacity", &self.quota.burst_size())
            .field("refill_every", &self.quota.replenish_interval())
            .field("max_keys", &self.max_keys)
            .finish()
    }
}

/// governor's map of keys, which refuses a new key while `max_keys` are tracked.
struct BoundedStore<K> {
    keys: DashMapStateStore<K>,
    max_keys: usize,
}

impl<K: Hash + Eq + Clone> StateStore for BoundedStore<K> {
    type Key = K;

    fn measure_and_replace<T, F, E>(&self, key: &K, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        if !self.keys.contains_key(key) && self.keys.len() >= self.max_keys {
            // Measured as a key whose allowance is spent until the end of
            // time: refused, and not stored.
            return f(Some(Nanos::from(u64::MAX))).map(|(outcome, _)| outcome);
        }
        self.keys.measure_and_replace(key, f)
    }
}

impl<K: Hash + Eq + Clone> ShrinkableKeyedStateStore<K> for BoundedStore<K> {
    fn retain_recent(&self, drop_below: Nanos) {
        self.keys.retain_recent(drop_below);
    }

    fn shrink_to_fit(&self) {
        ShrinkableKeyedStateStore::shrink_to_fit(&self.keys);
    }

    fn len(&self) -> usize {
        self.keys.len()
    }

    fn is_empty(&self) -> bool {
        self.keys.is_empty()
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

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// Allows `allowance` calls per `window`, refilled continuously.
    pub fn new(allowance: u32, window: Duration) -> Self {
        Self::with_clock(allowance, window, MAX_TRACKED_KEYS, DefaultClock::default())
    }
}

impl<K: Hash + Eq + Clone, C: Clock + Clone> RateLimiter<K, C> {
    fn with_clock(allowance: u32, window: Duration, max_keys: usize, clock: C) -> Self {
        let capacity = NonZeroU32::new(allowance).unwrap_or(NonZeroU32::MIN);
        let every = (window / capacity.get()).max(Duration::from_nanos(1));
        let quota = Quota::with_period(every)
            .expect("a period of at least a nanosecond")
            .allow_burst(capacity);
        let store = BoundedStore {
            keys: DashMapStateStore::default(),
            max_keys,
        };
        Self {
            limiter: Gcra::new(quota, store, clock.clone()),
            clock,
            last_sweep: Mutex::new(None),
            quota,
            max_keys,
        }
    }

    /// Takes one token for `key`; false when its allowance is used up (or it
    /// is a new key and the bound is reached).
    pub fn allow(&self, key: K) -> bool {
        if self.limiter.check_key(&key).is_ok() {
            return true;
        }
        if self.limiter.len() < self.max_keys || !self.may_sweep() {
            return false;
        }
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        self.limiter.check_key(&key).is_ok()
    }

    fn may_sweep(&self) -> bool {
        let now = self.clock.now();
        let mut last = self.last_sweep.lock();
        let due = last
            .is_none_or(|swept| Duration::from(now.duration_since(swept)) >= SWEEP_AT_MOST_EVERY);
        if due {
            *last = Some(now);
        }
        due
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

    use governor::clock::FakeRelativeClock;

    fn limiter<K: Hash + Eq + Clone>(
        allowance: u32,
        window: Duration,
        max_keys: usize,
    ) -> (RateLimiter<K, FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        let limiter = RateLimiter::with_clock(allowance, window, max_keys, clock.clone());
        (limiter, clock)
    }

    #[test]
    fn an_allowance_is_spent_then_refilled() {
        let (limiter, clock) = limiter(2, Duration::from_secs(2), MAX_TRACKED_KEYS);
        assert!(limiter.allow('a'));
        assert!(limiter.allow('a'));
        assert!(!limiter.allow('a'));
        assert!(limiter.allow('b'), "keys are limited separately");
        clock.advance(Duration::from_secs(1));
        assert!(limiter.allow('a'));
        assert!(!limiter.allow('a'));
    }

    #[test]
    fn the_tracked_keys_stay_bounded_when_none_is_idle() {
        let (limiter, clock) = limiter(2, Duration::from_secs(60), 3);
        for key in 0..3 {
            assert!(limiter.allow(key));
        }
        assert!(!limiter.allow(3), "a new key waits while none is idle");
        assert!(limiter.allow(0), "known keys keep their allowance");
        assert_eq!(limiter.limiter.len(), 3);
        clock.advance(Duration::from_secs(61));
        assert!(limiter.allow(3), "idle buckets are dropped for new keys");
        assert!(limiter.limiter.len() <= 3);
    }

    #[test]
    fn its_debug_shows_counts_not_keys() {
        let (limiter, _clock) = limiter(2, Duration::from_secs(60), 3);
        let key = Uuid::new_v4();
        assert!(limiter.allow(key));
        let printed = format!("{limiter:?}");
        assert!(!printed.contains(&key.to_string()), "{printed}");
        assert!(printed.contains("tracked_keys: 1"), "{printed}");
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
