//! The status rule of one user, in one pure function (SPEC "Status of one
//! user"), so the list, the batch lookup and the live stream can never
//! disagree.
//!
//! All times are whole Unix seconds: Redis stores seconds, and comparing a
//! logout with a login at the same precision makes "a logout at or after the
//! login" mean the same thing wherever the logout was recorded.

use presence_core::threshold::ThresholdMinutes;
use presence_proto::admin::{PresenceState, StatusSource, UserStatus};
use presence_proto::timestamp;

/// What the stores know about one user.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Observations {
    /// `last_activity` from Redis (None when absent or Redis is unreachable).
    pub last_activity: Option<i64>,
    /// The last successful login in login_history.
    pub last_login: Option<i64>,
    /// The last logout in login_history.
    pub last_logout_row: Option<i64>,
    /// The `last_logout` marker in Redis.
    pub logout_marker: Option<i64>,
    /// The user's browsers that pinged within the threshold (Redis; 0 when
    /// unreachable).
    pub browsers: u32,
    /// With idle detection on, the user's entry in the away index: their
    /// last ping found none of their browsers with recent input.
    pub away_at: Option<i64>,
}

impl Observations {
    /// The last logout either store knows of: a logout counts wherever it
    /// was recorded (the row may lag the marker, or the marker may expire).
    pub fn last_logout(&self) -> Option<i64> {
        self.last_logout_row.max(self.logout_marker)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    pub online: bool,
    pub source: StatusSource,
    pub last_activity: Option<i64>,
    pub last_login: Option<i64>,
    pub last_seen: Option<i64>,
    /// Browsers keeping the user online by activity; 0 otherwise.
    pub active_browsers: u32,
    /// Online, away or offline.
    pub state: PresenceState,
}

pub fn evaluate(seen: Observations, now: i64, threshold: ThresholdMinutes) -> Status {
    let fresh = |at: i64| now - at <= threshold.seconds();
    let last_logout = seen.last_logout();
    let (online, source) = match (seen.last_activity, seen.last_login) {
        // Rule 1: a recent ping.
        (Some(activity), _) if fresh(activity) => (true, StatusSource::Activity),
        // Rule 2: a recent login with no logout at or after it.
        (_, Some(login)) if fresh(login) && last_logout.is_none_or(|logout| logout < login) => {
            (true, StatusSource::LoginHistory)
        }
        // Rule 3.
        _ => (false, StatusSource::None),
    };
    // Away: online by a ping that found every browser idle, and no ping
    // since (a ping that does not say clears the entry; this guards the order).
    let away = source == StatusSource::Activity
        && seen
            .away_at
            .zip(seen.last_activity)
            .is_some_and(|(away, ping)| away >= ping && fresh(away));
    let state = match (online, away) {
        (false, _) => PresenceState::Offline,
        (true, true) => PresenceState::Away,
        (true, false) => PresenceState::Online,
    };
    Status {
        online,
        source,
        last_activity: seen.last_activity,
        last_login: seen.last_login,
        last_seen: seen.last_activity.max(seen.last_login),
        active_browsers: if source == StatusSource::Activity {
            seen.browsers
        } else {
            0
        },
        state,
    }
}

/// The status of an account found by id (listings leave disabled accounts
/// out): a disabled one is offline whatever the stores still say (a ping or
/// a login from before the disabling), its facts kept.
pub fn evaluate_account(
    seen: Observations,
    now: i64,
    threshold: ThresholdMinutes,
    disabled: bool,
) -> Status {
    let status = evaluate(seen, now, threshold);
    if disabled {
        Status {
            online: false,
            source: StatusSource::None,
            active_browsers: 0,
            state: PresenceState::Offline,
            ..status
        }
    } else {
        status
    }
}

/// The contract's message for a user's status.
pub fn to_proto(id: uuid::Uuid, username: &str, display_name: &str, status: &Status) -> UserStatus {
    UserStatus {
        user_id: id.to_string(),
        username: username.to_owned(),
        display_name: display_name.to_owned(),
        online: status.online,
        source: status.source as i32,
        last_activity_at: status.last_activity.map(timestamp),
        last_login_at: status.last_login.map(timestamp),
        last_seen_at: status.last_seen.map(timestamp),
        active_browsers: status.active_browsers,
        state: status.state as i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;
    const T: i64 = 15 * 60;

    fn status(seen: Observations) -> (bool, StatusSource) {
        let status = evaluate(seen, NOW, ThresholdMinutes::default());
        (status.online, status.source)
    }

    #[test]
    fn the_rules_in_order() {
        use StatusSource::{Activity, LoginHistory, None as NoSource};
        let cases = [
            (
                "fresh activity",
                Observations {
                    last_activity: Some(NOW - 60),
                    ..Default::default()
                },
                (true, Activity),
            ),
            (
                "activity exactly at the threshold",
                Observations {
                    last_activity: Some(NOW - T),
                    ..Default::default()
                },
                (true, Activity),
            ),
            (
                "activity one second past the threshold",
                Observations {
                    last_activity: Some(NOW - T - 1),
                    ..Default::default()
                },
                (false, NoSource),
            ),
            (
                "stale activity but a recent login",
                Observations {
                    last_activity: Some(NOW - 2 * T),
                    last_login: Some(NOW - 60),
                    ..Default::default()
                },
                (true, LoginHistory),
            ),
            (
                "login exactly at the threshold",
                Observations {
                    last_login: Some(NOW - T),
                    ..Default::default()
                },
                (true, LoginHistory),
            ),
            (
                "login one second past the threshold",
                Observations {
                    last_login: Some(NOW - T - 1),
                    ..Default::default()
                },
                (false, NoSource),
            ),
            (
                "recent login followed by a logout row",
                Observations {
                    last_login: Some(NOW - 120),
                    last_logout_row: Some(NOW - 60),
                    ..Default::default()
                },
                (false, NoSource),
            ),
            (
                "recent login followed by a logout marker only",
                Observations {
                    last_login: Some(NOW - 120),
                    logout_marker: Some(NOW - 60),
                    ..Default::default()
                },
                (false, NoSource),
            ),
            (
                "logout in the same second as the login",
                Observations {
                    last_login: Some(NOW - 60),
                    last_logout_row: Some(NOW - 60),
                    ..Default::default()
                },
                (false, NoSource),
            ),
            (
                "logout then a new login",
                Observations {
                    last_login: Some(NOW - 60),
                    last_logout_row: Some(NOW - 120),
                    ..Default::default()
                },
                (true, LoginHistory),
            ),
            (
                "a fresh ping wins over an old logout",
                Observations {
                    last_activity: Some(NOW - 5),
                    last_login: Some(NOW - 600),
                    last_logout_row: Some(NOW - 300),
                    ..Default::default()
                },
                (true, Activity),
            ),
            ("no data at all", Observations::default(), (false, NoSource)),
        ];
        for (case, seen, expected) in cases {
            assert_eq!(status(seen), expected, "{case}");
        }
    }

    #[test]
    fn last_seen_is_the_latest_known_time() {
        let seen = Observations {
            last_activity: Some(NOW - 10),
            last_login: Some(NOW - 100),
            ..Default::default()
        };
        assert_eq!(
            evaluate(seen, NOW, ThresholdMinutes::default()).last_seen,
            Some(NOW - 10)
        );
        let seen = Observations {
            last_login: Some(NOW - 100),
            ..Default::default()
        };
        assert_eq!(
            evaluate(seen, NOW, ThresholdMinutes::default()).last_seen,
            Some(NOW - 100)
        );
        assert_eq!(
            evaluate(Observations::default(), NOW, ThresholdMinutes::default()).last_seen,
            None
        );
    }

    #[test]
    fn browsers_are_counted_only_while_they_keep_the_user_online() {
        let pinging = Observations {
            last_activity: Some(NOW - 10),
            browsers: 2,
            ..Default::default()
        };
        let threshold = ThresholdMinutes::default();
        assert_eq!(evaluate(pinging, NOW, threshold).active_browsers, 2);
        let stale = Observations {
            last_activity: Some(NOW - T - 1),
            ..pinging
        };
        assert_eq!(evaluate(stale, NOW, threshold).active_browsers, 0);
        let by_login = Observations {
            last_activity: Some(NOW - T - 1),
            last_login: Some(NOW - 60),
            ..pinging
        };
        assert_eq!(evaluate(by_login, NOW, threshold).active_browsers, 0);
        assert_eq!(
            evaluate_account(pinging, NOW, threshold, true).active_browsers,
            0
        );
    }

    #[test]
    fn away_is_online_by_a_ping_that_found_every_browser_idle() {
        let threshold = ThresholdMinutes::default();
        let idle_ping = Observations {
            last_activity: Some(NOW - 30),
            away_at: Some(NOW - 30),
            browsers: 1,
            ..Default::default()
        };
        let status = evaluate(idle_ping, NOW, threshold);
        assert_eq!(status.state, PresenceState::Away);
        assert!(status.online, "away users are still online");
        // A later ping (with input, or from a client that does not say) is not away.
        let later_ping = Observations {
            last_activity: Some(NOW - 5),
            ..idle_ping
        };
        assert_eq!(
            evaluate(later_ping, NOW, threshold).state,
            PresenceState::Online
        );
        let no_entry = Observations {
            away_at: None,
            ..idle_ping
        };
        assert_eq!(
            evaluate(no_entry, NOW, threshold).state,
            PresenceState::Online
        );
        let expired = Observations {
            last_activity: Some(NOW - T - 1),
            away_at: Some(NOW - T - 1),
            ..idle_ping
        };
        assert_eq!(
            evaluate(expired, NOW, threshold).state,
            PresenceState::Offline
        );
        assert_eq!(
            evaluate_account(idle_ping, NOW, threshold, true).state,
            PresenceState::Offline
        );
    }

    #[test]
    fn the_threshold_decides() {
        let seen = Observations {
            last_activity: Some(NOW - 5 * 60),
            ..Default::default()
        };
        assert!(evaluate(seen, NOW, ThresholdMinutes::new(5).unwrap()).online);
        assert!(!evaluate(seen, NOW, ThresholdMinutes::new(4).unwrap()).online);
    }
}
