//! Access tokens: JWTs with a pinned algorithm, `exp`, `sub` (user id), `role`
//! and `jti`. The activity service issues them; every service verifies them
//! with the same rules, so a token accepted by one is accepted by all.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Error;

/// What a token lets its bearer do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A person using the application: may ping and sign out.
    User,
    /// A person administering it: also sees every user's status and the settings.
    Admin,
    /// Another back-end service: may record activity for users and read statuses.
    Service,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
            Role::Service => "service",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = Error;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "user" => Ok(Role::User),
            "admin" => Ok(Role::Admin),
            "service" => Ok(Role::Service),
            other => Err(Error::InvalidConfig(format!(
                "unknown role {other:?}: expected user, admin or service"
            ))),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: Uuid,
    role: Role,
    jti: String,
    exp: i64,
    iat: i64,
    iss: String,
}

/// The verified identity behind a request. The user id always comes from here,
/// never from a request body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub user_id: Uuid,
    pub role: Role,
    /// The token's `jti`, the handle by which logout revokes it.
    pub token_id: String,
    /// The token's `exp`, in Unix seconds.
    pub expires_at: i64,
}

/// Checks tokens: signature with the pinned algorithm, expiry, issuer, claims.
#[derive(Clone)]
pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl TokenVerifier {
    pub fn new(algorithm: Algorithm, key: DecodingKey, issuer: &str) -> Self {
        let mut validation = Validation::new(algorithm);
        validation.set_required_spec_claims(&["exp", "sub", "iss"]);
        validation.set_issuer(&[issuer]);
        validation.leeway = 5;
        Self { key, validation }
    }

    /// Verifies `token`; any defect is `Error::InvalidToken` with a reason for
    /// the log (the client only ever hears "invalid token").
    pub fn verify(&self, token: &str) -> Result<Caller, Error> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|error| Error::InvalidToken(error.to_string()))?;
        let claims = data.claims;
        if claims.jti.is_empty() || claims.jti.len() > 128 {
            return Err(Error::InvalidToken(
                "jti must be 1 to 128 characters".into(),
            ));
        }
        Ok(Caller {
            user_id: claims.sub,
            role: claims.role,
            token_id: claims.jti,
            expires_at: claims.exp,
        })
    }
}

/// A freshly signed token and what the client needs to know about it.
#[derive(Debug)]
pub struct IssuedToken {
    pub token: String,
    pub expires_at: i64,
    pub token_id: String,
}

/// Signs tokens for signed-in users.
#[derive(Clone)]
pub struct TokenIssuer {
    key: EncodingKey,
    algorithm: Algorithm,
    issuer: String,
    lifetime_seconds: i64,
}

impl TokenIssuer {
    pub fn new(
        algorithm: Algorithm,
        key: EncodingKey,
        issuer: &str,
        lifetime_seconds: i64,
    ) -> Self {
        Self {
            key,
            algorithm,
            issuer: issuer.to_owned(),
            lifetime_seconds,
        }
    }

    pub fn issue(&self, user_id: Uuid, role: Role, now: i64) -> Result<IssuedToken, Error> {
        let claims = Claims {
            sub: user_id,
            role,
            jti: Uuid::new_v4().simple().to_string(),
            exp: now + self.lifetime_seconds,
            iat: now,
            iss: self.issuer.clone(),
        };
        let token = jsonwebtoken::encode(&Header::new(self.algorithm), &claims, &self.key)
            .map_err(|error| Error::InvalidConfig(format!("cannot sign a token: {error}")))?;
        Ok(IssuedToken {
            token,
            expires_at: claims.exp,
            token_id: claims.jti,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn pair() -> (TokenIssuer, TokenVerifier) {
        (
            TokenIssuer::new(
                Algorithm::HS256,
                EncodingKey::from_secret(SECRET),
                "presence",
                60,
            ),
            TokenVerifier::new(
                Algorithm::HS256,
                DecodingKey::from_secret(SECRET),
                "presence",
            ),
        )
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    #[test]
    fn an_issued_token_verifies_to_its_caller() {
        let (issuer, verifier) = pair();
        let id = Uuid::new_v4();
        let issued = issuer.issue(id, Role::Admin, now()).unwrap();
        let caller = verifier.verify(&issued.token).unwrap();
        assert_eq!(caller.user_id, id);
        assert_eq!(caller.role, Role::Admin);
        assert_eq!(caller.token_id, issued.token_id);
    }

    #[test]
    fn an_expired_token_is_refused() {
        let (issuer, verifier) = pair();
        let issued = issuer
            .issue(Uuid::new_v4(), Role::User, now() - 3600)
            .unwrap();
        assert!(verifier.verify(&issued.token).is_err());
    }

    #[test]
    fn a_token_from_another_issuer_is_refused() {
        let other = TokenIssuer::new(
            Algorithm::HS256,
            EncodingKey::from_secret(SECRET),
            "evil",
            60,
        );
        let (_, verifier) = pair();
        let issued = other.issue(Uuid::new_v4(), Role::User, now()).unwrap();
        assert!(verifier.verify(&issued.token).is_err());
    }

    #[test]
    fn an_unsigned_token_is_refused() {
        let (_, verifier) = pair();
        // {"alg":"none"} . {"sub":...,"role":"admin",...} . (no signature)
        let header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
        let body = "eyJzdWIiOiIwMDAwMDAwMC0wMDAwLTAwMDAtMDAwMC0wMDAwMDAwMDAwMDAiLCJyb2xlIjoiYWRtaW4iLCJqdGkiOiJ4IiwiZXhwIjo0MTAyNDQ0ODAwLCJpYXQiOjAsImlzcyI6InByZXNlbmNlIn0";
        assert!(verifier.verify(&format!("{header}.{body}.")).is_err());
    }
}
