//! The "online" threshold as a domain type: parsed once at the edge, so the
//! rest of the code never sees an out-of-range value.

use std::time::Duration;

/// Minutes a ping (or login) keeps a user online: 1 to 1440, default 15.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ThresholdMinutes(u16);

/// Why a threshold was refused, worded for the person who typed it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("threshold_minutes must be a whole number of minutes from 1 to 1440 (got {0})")]
pub struct ThresholdOutOfRange(pub i64);

impl ThresholdMinutes {
    pub const MIN: u16 = 1;
    pub const MAX: u16 = 1440;
    pub const DEFAULT: Self = Self(15);

    pub fn new(minutes: i64) -> Result<Self, ThresholdOutOfRange> {
        if (i64::from(Self::MIN)..=i64::from(Self::MAX)).contains(&minutes) {
            Ok(Self(minutes as u16))
        } else {
            Err(ThresholdOutOfRange(minutes))
        }
    }

    pub fn minutes(self) -> u16 {
        self.0
    }

    pub fn seconds(self) -> i64 {
        i64::from(self.0) * 60
    }

    /// How long activity keys and logout markers live: twice the threshold, so
    /// a key outlives the window in which it can make a user online.
    pub fn key_ttl(self) -> Duration {
        Duration::from_secs(2 * self.seconds() as u64)
    }

    /// The ping interval clients are told to use: the configured one, capped at
    /// half the threshold so a visible tab always keeps its user online.
    pub fn ping_interval_seconds(self, configured: u32) -> u32 {
        let half = (self.seconds() / 2).max(1);
        configured.min(u32::try_from(half).unwrap_or(u32::MAX))
    }
}

impl Default for ThresholdMinutes {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Minutes without keyboard, pointer or touch input after which a browser
/// reports itself idle, when idle detection is on: 1 to 240, default 5 (the
/// usual default of chat systems).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IdleMinutes(u16);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("idle_after_minutes must be a whole number of minutes from 1 to 240 (got {0})")]
pub struct IdleOutOfRange(pub i64);

impl IdleMinutes {
    pub const MIN: u16 = 1;
    pub const MAX: u16 = 240;
    pub const DEFAULT: Self = Self(5);

    pub fn new(minutes: i64) -> Result<Self, IdleOutOfRange> {
        if (i64::from(Self::MIN)..=i64::from(Self::MAX)).contains(&minutes) {
            Ok(Self(minutes as u16))
        } else {
            Err(IdleOutOfRange(minutes))
        }
    }

    pub fn minutes(self) -> u16 {
        self.0
    }
}

impl Default for IdleMinutes {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Idle detection as set by admins: off by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IdleDetection {
    pub enabled: bool,
    pub after: IdleMinutes,
}

impl IdleDetection {
    /// The delay browsers are told, `None` while detection is off.
    pub fn delay(self) -> Option<IdleMinutes> {
        self.enabled.then_some(self.after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_range_only() {
        assert!(ThresholdMinutes::new(0).is_err());
        assert_eq!(ThresholdMinutes::new(1).unwrap().minutes(), 1);
        assert_eq!(ThresholdMinutes::new(1440).unwrap().minutes(), 1440);
        assert_eq!(ThresholdMinutes::new(1441), Err(ThresholdOutOfRange(1441)));
        assert!(ThresholdMinutes::new(-5).is_err());
    }

    #[test]
    fn keys_live_twice_the_threshold() {
        let fifteen = ThresholdMinutes::default();
        assert_eq!(fifteen.key_ttl(), Duration::from_secs(1800));
    }

    #[test]
    fn the_ping_interval_never_exceeds_half_the_threshold() {
        let one_minute = ThresholdMinutes::new(1).unwrap();
        assert_eq!(one_minute.ping_interval_seconds(60), 30);
        assert_eq!(ThresholdMinutes::default().ping_interval_seconds(60), 60);
        assert_eq!(ThresholdMinutes::default().ping_interval_seconds(5), 5);
    }

    #[test]
    fn idle_detection_is_off_by_default_with_a_five_minute_delay() {
        let default = IdleDetection::default();
        assert!(!default.enabled);
        assert_eq!(default.after.minutes(), 5);
        assert_eq!(default.delay(), None);
        assert!(IdleMinutes::new(0).is_err());
        assert!(IdleMinutes::new(241).is_err());
        assert_eq!(IdleMinutes::new(240).unwrap().minutes(), 240);
    }

    #[test]
    fn the_refusal_names_the_allowed_range() {
        let message = ThresholdMinutes::new(0).unwrap_err().to_string();
        assert!(message.contains("1 to 1440"), "{message}");
    }
}
