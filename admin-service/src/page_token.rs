//! Opaque, tamper-evident page tokens: the position (last username seen) and
//! the filter, signed with HMAC-SHA256 so a client can neither forge a position
//! nor reuse a token with another filter unnoticed.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::AdminError;

#[derive(Clone)]
pub struct PageTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

#[derive(Debug, Serialize, Deserialize)]
struct Position {
    /// The filter the listing was made with (its enum number).
    f: i32,
    /// The last username of the previous page.
    a: String,
}

impl PageTokens {
    pub fn new(key: &[u8]) -> Self {
        Self {
            encoding: EncodingKey::from_secret(key),
            decoding: DecodingKey::from_secret(key),
        }
    }

    pub fn issue(&self, filter: i32, after_username: &str) -> String {
        let position = Position {
            f: filter,
            a: after_username.to_owned(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &position, &self.encoding)
            .unwrap_or_default()
    }

    /// The username to continue after; `None` for an empty (first page) token.
    pub fn read(&self, token: &str, filter: i32) -> Result<Option<String>, AdminError> {
        if token.is_empty() {
            return Ok(None);
        }
        let invalid = || {
            AdminError::InvalidArgument(
                "page_token was not issued by this service; start again with an empty page_token"
                    .into(),
            )
        };
        let mut validation = Validation::new(Algorithm::HS256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        let position = jsonwebtoken::decode::<Position>(token, &self.decoding, &validation)
            .map_err(|_| invalid())?
            .claims;
        if position.f != filter {
            return Err(AdminError::InvalidArgument(
                "page_token was issued for another filter; keep the filter while paging".into(),
            ));
        }
        Ok(Some(position.a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_round_trips_its_position() {
        let tokens = PageTokens::new(b"key");
        let token = tokens.issue(2, "alice");
        assert_eq!(tokens.read(&token, 2).unwrap().as_deref(), Some("alice"));
        assert_eq!(tokens.read("", 2).unwrap(), None);
    }

    #[test]
    fn forged_or_foreign_tokens_are_refused() {
        let tokens = PageTokens::new(b"key");
        let other = PageTokens::new(b"another key");
        assert!(tokens.read(&other.issue(1, "alice"), 1).is_err());
        assert!(tokens.read("garbage", 1).is_err());
        assert!(tokens.read(&tokens.issue(1, "alice"), 2).is_err());
    }
}
