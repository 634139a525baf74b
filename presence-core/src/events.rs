//! The messages the activity service publishes on the status channel when a
//! user signs in or out, so status watchers hear of it at once. (Pings are not
//! published: watchers read them from the presence index, which keeps a ping
//! to one round trip.)

use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusChange {
    Login,
    Logout,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusEvent {
    pub user_id: Uuid,
    pub change: StatusChange,
    /// Unix seconds.
    pub at: i64,
}

impl StatusEvent {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(payload: &str) -> Option<Self> {
        serde_json::from_str(payload).ok()
    }
}
