//! Opaque, tamper-evident page tokens: the position (last username seen) and
//! the filter, with an HMAC-SHA256 tag under the admin service's own secret
//! (`PRESENCE_PAGE_TOKEN_SECRET`, never derived from the JWT keys, whose
//! public half anyone may hold), so a client can neither forge a position
//! nor reuse a token with another filter unnoticed.
//!
//! A token is `base64url(payload) "." base64url(tag)`, the payload being a
//! version byte, the filter (4 bytes, big-endian) and the username's UTF-8.
//! Reading one never fails in any other way than "not issued here": every
//! defect (size, encoding, tag, version, text) is the same `InvalidArgument`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::AdminError;

type HmacSha256 = Hmac<Sha256>;

const VERSION: u8 = 1;
/// What the tag covers besides the payload, so a tag made for anything else
/// under the same key never passes for a page token.
const CONTEXT: &[u8] = b"presence admin page token\0";
/// Longer tokens are refused before decoding; an issued one is far shorter
/// (usernames are at most 64 characters).
pub const MAX_PAGE_TOKEN_CHARS: usize = 1024;
/// The shortest secret accepted.
pub const MIN_SECRET_BYTES: usize = 32;

#[derive(Debug, Clone)]
pub struct PageTokens {
    mac: HmacSha256,
}

impl PageTokens {
    /// Page tokens under `secret` (checked to be at least 32 bytes by the
    /// configuration; any length works here).
    pub fn new(secret: &[u8]) -> Self {
        Self {
            mac: HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length"),
        }
    }

    fn tag(&self, payload: &[u8]) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(CONTEXT);
        mac.update(payload);
        mac
    }

    /// The token that continues a listing with `filter` after `after_username`.
    pub fn issue(&self, filter: i32, after_username: &str) -> String {
        let mut payload = Vec::with_capacity(5 + after_username.len());
        payload.push(VERSION);
        payload.extend_from_slice(&filter.to_be_bytes());
        payload.extend_from_slice(after_username.as_bytes());
        let tag = self.tag(&payload).finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// The username to continue after; `None` for an empty (first page) token.
    pub fn read(&self, token: &str, filter: i32) -> Result<Option<String>, AdminError> {
        if token.is_empty() {
            return Ok(None);
        }
        let (token_filter, after) = self.verify(token).ok_or_else(|| {
            AdminError::InvalidArgument(
                "page_token was not issued by this service; start again with an empty page_token"
                    .into(),
            )
        })?;
        if token_filter != filter {
            return Err(AdminError::InvalidArgument(
                "page_token was issued for another filter; keep the filter while paging".into(),
            ));
        }
        Ok(Some(after))
    }

    /// The filter and username of a token issued here, or `None`.
    fn verify(&self, token: &str) -> Option<(i32, String)> {
        if token.len() > MAX_PAGE_TOKEN_CHARS {
            return None;
        }
        let (payload, tag) = token.split_once('.')?;
        let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        // Constant-time comparison: a mismatch's position tells nothing.
        self.tag(&payload).verify_slice(&tag).ok()?;
        let (&version, rest) = payload.split_first()?;
        if version != VERSION || rest.len() < 4 {
            return None;
        }
        let (filter, username) = rest.split_at(4);
        let filter = i32::from_be_bytes(filter.try_into().ok()?);
        let username = String::from_utf8(username.to_vec()).ok()?;
        Some((filter, username))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const KEY: &[u8] = b"page-token-test-key-page-token-test-key";

    #[test]
    fn a_token_round_trips_its_position() {
        let tokens = PageTokens::new(KEY);
        let token = tokens.issue(2, "alice");
        assert_eq!(tokens.read(&token, 2).unwrap().as_deref(), Some("alice"));
        assert_eq!(tokens.read("", 2).unwrap(), None);
    }

    #[test]
    fn forged_or_foreign_tokens_are_refused() {
        let tokens = PageTokens::new(KEY);
        let other = PageTokens::new(b"another key another key another key");
        assert!(tokens.read(&other.issue(1, "alice"), 1).is_err());
        assert!(tokens.read("garbage", 1).is_err());
        assert!(tokens.read(&tokens.issue(1, "alice"), 2).is_err());
    }

    #[test]
    fn a_token_with_a_changed_position_is_refused() {
        let tokens = PageTokens::new(KEY);
        let token = tokens.issue(1, "alice");
        let (_, tag) = token.split_once('.').unwrap();
        let mut payload = vec![VERSION];
        payload.extend_from_slice(&1i32.to_be_bytes());
        payload.extend_from_slice(b"mallory");
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(payload));
        assert!(tokens.read(&forged, 1).is_err());
    }

    fn refused_as_invalid_argument(result: Result<Option<String>, AdminError>) -> bool {
        matches!(result, Err(AdminError::InvalidArgument(_)))
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics_and_never_verifies(token in ".{1,2000}", filter in any::<i32>()) {
            let tokens = PageTokens::new(KEY);
            prop_assert!(refused_as_invalid_argument(tokens.read(&token, filter)));
        }

        #[test]
        fn arbitrary_base64_parts_never_verify(
            payload in proptest::collection::vec(any::<u8>(), 0..300),
            tag in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let tokens = PageTokens::new(KEY);
            let token = format!("{}.{}", URL_SAFE_NO_PAD.encode(payload), URL_SAFE_NO_PAD.encode(tag));
            prop_assert!(refused_as_invalid_argument(tokens.read(&token, 0)));
        }

        #[test]
        fn issued_tokens_round_trip(username in "\\PC{0,64}", filter in 0i32..4) {
            let tokens = PageTokens::new(KEY);
            let token = tokens.issue(filter, &username);
            prop_assert!(token.len() <= MAX_PAGE_TOKEN_CHARS);
            prop_assert_eq!(tokens.read(&token, filter).unwrap(), Some(username));
        }

        #[test]
        fn a_token_is_bound_to_its_filter(username in "\\PC{0,64}", filter in 0i32..4, other in 0i32..4) {
            prop_assume!(filter != other);
            let tokens = PageTokens::new(KEY);
            let token = tokens.issue(filter, &username);
            prop_assert!(refused_as_invalid_argument(tokens.read(&token, other)));
        }

        #[test]
        fn a_token_with_any_one_character_changed_is_refused(
            username in "[a-z0-9]{1,64}",
            position in any::<prop::sample::Index>(),
            replacement in "[A-Za-z0-9_.-]",
        ) {
            let tokens = PageTokens::new(KEY);
            let token = tokens.issue(1, &username);
            let at = position.index(token.len());
            let mut changed = token.clone();
            changed.replace_range(at..at + 1, &replacement);
            prop_assume!(changed != token);
            // Base64 may decode two texts to the same bytes (unused low bits);
            // such a twin carries the very same position and filter.
            match tokens.read(&changed, 1) {
                Ok(position) => prop_assert_eq!(position, Some(username)),
                Err(error) => prop_assert!(matches!(error, AdminError::InvalidArgument(_))),
            }
        }
    }
}
