//! Opaque, tamper-evident page tokens: the position (last username seen),
//! the filter and the query, with an HMAC-SHA256 tag under the admin
//! service's own secret (`PRESENCE_PAGE_TOKEN_SECRET`, never derived from the
//! JWT keys, whose public half anyone may hold), so a client can neither
//! forge a position nor reuse a token with another filter or query unnoticed.
//!
//! A token is `base64url(payload) "." base64url(tag)`, the payload being a
//! version byte, the filter (4 bytes, big-endian), the normalised query's
//! length in bytes (2 bytes, big-endian) and UTF-8, then the username's
//! UTF-8. Reading one never fails in any other way than "not issued here",
//! "another filter" or "another query": every defect (size, encoding, tag,
//! version, text) is the same `InvalidArgument`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::AdminError;

type HmacSha256 = Hmac<Sha256>;

/// 2 since tokens carry the query: a version 1 token (no query) is refused.
const VERSION: u8 = 2;
/// What the tag covers besides the payload, so a tag made for anything else
/// under the same key never passes for a page token.
const CONTEXT: &[u8] = b"presence admin page token\0";
/// Longer tokens are refused before decoding; the longest issued one (a
/// query of 100 four-byte characters, a username of 64) is 928 characters.
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

    /// The token that continues a listing with `filter` and `query` (as
    /// `SearchQuery::normalised` gives it) after `after_username`.
    pub fn issue(&self, filter: i32, query: &str, after_username: &str) -> String {
        // A query is at most 100 characters, 400 bytes; longer is a bug.
        let query_len = u16::try_from(query.len()).expect("queries are at most 400 bytes");
        let mut payload = Vec::with_capacity(7 + query.len() + after_username.len());
        payload.push(VERSION);
        payload.extend_from_slice(&filter.to_be_bytes());
        payload.extend_from_slice(&query_len.to_be_bytes());
        payload.extend_from_slice(query.as_bytes());
        payload.extend_from_slice(after_username.as_bytes());
        let tag = self.tag(&payload).finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// The username to continue after; `None` for an empty (first page) token.
    pub fn read(
        &self,
        token: &str,
        filter: i32,
        query: &str,
    ) -> Result<Option<String>, AdminError> {
        if token.is_empty() {
            return Ok(None);
        }
        let issued = self.verify(token).ok_or_else(|| {
            AdminError::InvalidArgument(
                "page_token was not issued by this service; start again with an empty page_token"
                    .into(),
            )
        })?;
        if issued.filter != filter {
            return Err(AdminError::InvalidArgument(
                "page_token was issued for another filter; keep the filter while paging".into(),
            ));
        }
        if issued.query != query {
            return Err(AdminError::InvalidArgument(
                "page_token was issued for another query; keep the query while paging".into(),
            ));
        }
        Ok(Some(issued.after))
    }

    /// What a token issued here carries, or `None`.
    fn verify(&self, token: &str) -> Option<Issued> {
        if token.len() > MAX_PAGE_TOKEN_CHARS {
            return None;
        }
        let (payload, tag) = token.split_once('.')?;
        let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        // Constant-time comparison: a mismatch's position tells nothing.
        self.tag(&payload).verify_slice(&tag).ok()?;
        let (&version, rest) = payload.split_first()?;
        if version != VERSION {
            return None;
        }
        let (filter, rest) = rest.split_first_chunk::<4>()?;
        let (query_len, rest) = rest.split_first_chunk::<2>()?;
        let query_len = usize::from(u16::from_be_bytes(*query_len));
        if rest.len() < query_len {
            return None;
        }
        let (query, username) = rest.split_at(query_len);
        Some(Issued {
            filter: i32::from_be_bytes(*filter),
            query: String::from_utf8(query.to_vec()).ok()?,
            after: String::from_utf8(username.to_vec()).ok()?,
        })
    }
}

/// The content of a verified token.
struct Issued {
    filter: i32,
    query: String,
    after: String,
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::search::{MAX_QUERY_CHARS, SearchQuery};

    const KEY: &[u8] = b"page-token-test-key-page-token-test-key";

    #[test]
    fn a_token_round_trips_its_position() {
        let tokens = PageTokens::new(KEY);
        let token = tokens.issue(2, "", "alice");
        assert_eq!(
            tokens.read(&token, 2, "").unwrap().as_deref(),
            Some("alice")
        );
        assert_eq!(tokens.read("", 2, "").unwrap(), None);
        let token = tokens.issue(2, "elo dur", "alice");
        assert_eq!(
            tokens.read(&token, 2, "elo dur").unwrap().as_deref(),
            Some("alice")
        );
    }

    #[test]
    fn forged_or_foreign_tokens_are_refused() {
        let tokens = PageTokens::new(KEY);
        let other = PageTokens::new(b"another key another key another key");
        assert!(tokens.read(&other.issue(1, "", "alice"), 1, "").is_err());
        assert!(tokens.read("garbage", 1, "").is_err());
        assert!(tokens.read(&tokens.issue(1, "", "alice"), 2, "").is_err());
    }

    #[test]
    fn a_token_is_bound_to_its_query() {
        let tokens = PageTokens::new(KEY);
        let token = tokens.issue(1, "elo", "alice");
        for other in ["", "el", "elo dur", "ELO"] {
            match tokens.read(&token, 1, other) {
                Err(AdminError::InvalidArgument(message)) => {
                    assert!(message.contains("another query"), "{other:?}: {message}");
                }
                result => panic!("{other:?}: {result:?}"),
            }
        }
        // A token of the first listing (no query) is refused with a query too.
        let unfiltered = tokens.issue(1, "", "alice");
        assert!(tokens.read(&unfiltered, 1, "elo").is_err());
    }

    /// A token as version 1 made it (filter and position, no query), under
    /// the same key and with a valid tag.
    #[test]
    fn a_token_of_the_previous_version_is_refused() {
        let tokens = PageTokens::new(KEY);
        let mut payload = vec![1u8];
        payload.extend_from_slice(&1i32.to_be_bytes());
        payload.extend_from_slice(b"alice");
        let tag = tokens.tag(&payload).finalize().into_bytes();
        let old = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(tag)
        );
        match tokens.read(&old, 1, "") {
            Err(AdminError::InvalidArgument(message)) => {
                assert!(message.contains("not issued by this service"), "{message}");
            }
            result => panic!("{result:?}"),
        }
    }

    #[test]
    fn a_token_with_a_changed_position_is_refused() {
        let tokens = PageTokens::new(KEY);
        let token = tokens.issue(1, "", "alice");
        let (_, tag) = token.split_once('.').unwrap();
        let mut payload = vec![VERSION];
        payload.extend_from_slice(&1i32.to_be_bytes());
        payload.extend_from_slice(&0u16.to_be_bytes());
        payload.extend_from_slice(b"mallory");
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(payload));
        assert!(tokens.read(&forged, 1, "").is_err());
    }

    #[test]
    fn a_query_length_past_the_payload_is_refused() {
        let tokens = PageTokens::new(KEY);
        let mut payload = vec![VERSION];
        payload.extend_from_slice(&1i32.to_be_bytes());
        payload.extend_from_slice(&500u16.to_be_bytes());
        payload.extend_from_slice(b"elo");
        let tag = tokens.tag(&payload).finalize().into_bytes();
        let token = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(tag)
        );
        assert!(tokens.read(&token, 1, "elo").is_err());
    }

    /// The longest query (100 four-byte characters) with the longest
    /// username (64 four-byte characters) still fits under the cap.
    #[test]
    fn the_longest_issued_token_is_accepted() {
        let tokens = PageTokens::new(KEY);
        let query = SearchQuery::parse(&"😀".repeat(MAX_QUERY_CHARS)).unwrap();
        let username = "😀".repeat(64);
        let token = tokens.issue(i32::MAX, &query.normalised(), &username);
        assert_eq!(token.len(), 928);
        assert!(token.len() <= MAX_PAGE_TOKEN_CHARS);
        assert_eq!(
            tokens.read(&token, i32::MAX, &query.normalised()).unwrap(),
            Some(username)
        );
    }

    fn refused_as_invalid_argument(result: Result<Option<String>, AdminError>) -> bool {
        matches!(result, Err(AdminError::InvalidArgument(_)))
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics_and_never_verifies(token in ".{1,2000}", filter in any::<i32>()) {
            let tokens = PageTokens::new(KEY);
            prop_assert!(refused_as_invalid_argument(tokens.read(&token, filter, "")));
        }

        #[test]
        fn arbitrary_base64_parts_never_verify(
            payload in proptest::collection::vec(any::<u8>(), 0..300),
            tag in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let tokens = PageTokens::new(KEY);
            let token = format!("{}.{}", URL_SAFE_NO_PAD.encode(payload), URL_SAFE_NO_PAD.encode(tag));
            prop_assert!(refused_as_invalid_argument(tokens.read(&token, 0, "")));
        }

        #[test]
        fn issued_tokens_round_trip(
            username in "\\PC{0,64}",
            query in "\\PC{0,100}",
            filter in 0i32..4,
        ) {
            let tokens = PageTokens::new(KEY);
            let query = SearchQuery::parse(&query).unwrap().normalised();
            let token = tokens.issue(filter, &query, &username);
            prop_assert!(token.len() <= MAX_PAGE_TOKEN_CHARS);
            prop_assert_eq!(tokens.read(&token, filter, &query).unwrap(), Some(username));
        }

        #[test]
        fn a_token_is_bound_to_its_filter(username in "\\PC{0,64}", filter in 0i32..4, other in 0i32..4) {
            prop_assume!(filter != other);
            let tokens = PageTokens::new(KEY);
            let token = tokens.issue(filter, "", &username);
            prop_assert!(refused_as_invalid_argument(tokens.read(&token, other, "")));
        }

        #[test]
        fn a_token_is_bound_to_its_query_proptest(
            username in "[a-z]{0,64}",
            query in "[a-z ]{0,20}",
            other in "[a-z ]{0,20}",
        ) {
            prop_assume!(query != other);
            let tokens = PageTokens::new(KEY);
            let token = tokens.issue(1, &query, &username);
            prop_assert!(refused_as_invalid_argument(tokens.read(&token, 1, &other)));
        }

        #[test]
        fn a_token_with_any_one_character_changed_is_refused(
            username in "[a-z0-9]{1,64}",
            query in "[a-z0-9]{0,20}",
            position in any::<prop::sample::Index>(),
            replacement in "[A-Za-z0-9_.-]",
        ) {
            let tokens = PageTokens::new(KEY);
            let token = tokens.issue(1, &query, &username);
            let at = position.index(token.len());
            let mut changed = token.clone();
            changed.replace_range(at..at + 1, &replacement);
            prop_assume!(changed != token);
            // Base64 may decode two texts to the same bytes (unused low bits);
            // such a twin carries the very same position, filter and query.
            match tokens.read(&changed, 1, &query) {
                Ok(position) => prop_assert_eq!(position, Some(username)),
                Err(error) => prop_assert!(matches!(error, AdminError::InvalidArgument(_))),
            }
        }
    }
}
