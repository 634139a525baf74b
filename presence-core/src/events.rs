//! The messages the activity service publishes on the status channel when a
//! user signs in or out, or becomes away or comes back, so status watchers
//! hear of it at once. (Other pings are not published: watchers read them
//! from the presence index, which keeps a ping to one round trip.)

use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusChange {
    Login,
    /// The user signed out and is offline: no other browser of theirs
    /// pinged within the threshold.
    Logout,
    /// One browser signed out (its token is revoked) while another of the
    /// user's browsers keeps them online: their browser count changed.
    BrowserLogout,
    /// The user became away or came back (idle detection on): a ping may
    /// undo it within the second, which the index alone would not show.
    AwayChanged,
}

impl StatusChange {
    /// Whether a token of the user was revoked by this change.
    pub fn is_sign_out(self) -> bool {
        matches!(self, Self::Logout | Self::BrowserLogout)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusEvent {
    pub user_id: Uuid,
    pub change: StatusChange,
    /// Unix seconds.
    pub at: i64,
}

impl StatusEvent {
    /// The event as watchers parse it.
    pub fn to_json(&self) -> Result<String, crate::Error> {
        Ok(serde_json::to_string(self)?)
    }

    pub fn from_json(payload: &str) -> Option<Self> {
        serde_json::from_str(payload).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_reads_back_as_it_was_published() {
        let event = StatusEvent {
            user_id: Uuid::new_v4(),
            change: StatusChange::Logout,
            at: 1_764_633_600,
        };
        let payload = event.to_json().unwrap();
        assert!(payload.contains("\"change\":\"logout\""), "{payload}");
        assert_eq!(StatusEvent::from_json(&payload), Some(event));
    }
}
