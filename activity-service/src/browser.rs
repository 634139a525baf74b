//! The browser id a ping or logout carries, parsed at the edge.
//!
//! Each browser picks a random id once and keeps it (its tabs share it), so
//! the activity service can count a user's browsers without learning
//! anything about them. The id is hostile input like any other: its length
//! and alphabet are checked before it reaches Redis.

use crate::error::ActivityError;

const MIN_CHARS: usize = 16;
const MAX_CHARS: usize = 64;

/// A well-formed browser id: 16 to 64 characters of A-Z, a-z, 0-9, `-`, `_`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrowserId(String);

impl BrowserId {
    /// `None` for an empty id (a client that does not tell browsers apart).
    pub fn parse(raw: String) -> Result<Option<Self>, ActivityError> {
        if raw.is_empty() {
            return Ok(None);
        }
        let well_formed = (MIN_CHARS..=MAX_CHARS).contains(&raw.len())
            && raw
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
        if !well_formed {
            return Err(ActivityError::InvalidArgument(format!(
                "browser_id must be empty or {MIN_CHARS} to {MAX_CHARS} characters of A-Z, a-z, 0-9, '-' and '_'"
            )));
        }
        Ok(Some(Self(raw)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_means_no_browser() {
        assert_eq!(BrowserId::parse(String::new()).unwrap(), None);
    }

    #[test]
    fn a_random_url_safe_id_is_accepted() {
        let id = BrowserId::parse("Zx3_k-9QpL2mN8vR4tY6wA".into()).unwrap();
        assert_eq!(id.unwrap().as_str(), "Zx3_k-9QpL2mN8vR4tY6wA");
    }

    #[test]
    fn too_short_too_long_or_foreign_characters_are_refused() {
        for raw in [
            "short".to_owned(),
            "a".repeat(65),
            "has space in the middle!".to_owned(),
            "accentué-accentué-accentué".to_owned(),
            "key:with:colons:and:more".to_owned(),
        ] {
            let refused = BrowserId::parse(raw.clone()).unwrap_err();
            assert!(
                refused.to_string().contains("browser_id"),
                "{raw}: {refused}"
            );
        }
    }
}
