//! Access tokens: JWTs checked as RFC 8725 asks. The activity service issues
//! them; every service verifies them with the same rules, so a token accepted
//! by one is accepted by all.
//!
//! A token is `typ: at+jwt`, signed with the one pinned algorithm by a key
//! named in its `kid`, and carries `iss`, `aud`, `sub` (user id), `role`,
//! `jti`, `iat`, `nbf` and `exp`. A verifier holds at most two keys, the
//! current one and the previous one, so the signing key can be rotated
//! without signing anyone out: tokens signed by either verify during the
//! overlap, and once the previous key is removed its tokens are refused.
//!
//! A key's id is derived from the key itself (a hash of the HMAC secret or
//! of the public key), so every process that holds the same key names it the
//! same way without another setting; an operator may still set ids
//! explicitly, for an external issuer that names its keys its own way. The
//! hash of an HMAC secret reveals nothing a signed token does not already
//! give an attacker to test guesses against.

use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::Error;

/// The `typ` header of an access token (RFC 9068), issued and required.
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";
/// The audience of the tokens Login issues: the presence services (activity,
/// admin and gateway). A token made for another audience is refused.
pub const DEFAULT_AUDIENCE: &str = "presence-services";
/// Clock difference tolerated between the processes, in seconds, for `exp`,
/// `nbf` and `iat`.
pub const LEEWAY_SECONDS: i64 = 5;
/// Default longest lifetime (`exp - iat`) of a user's or an admin's token.
pub const DEFAULT_MAX_LIFETIME_SECONDS: i64 = 24 * 3600;
/// Default longest lifetime of a service token (the CLI issues them for up to a year).
pub const DEFAULT_MAX_SERVICE_LIFETIME_SECONDS: i64 = 366 * 24 * 3600;
/// Longer bearer values are refused before any parsing.
const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Longest accepted `jti`.
const MAX_TOKEN_ID_CHARS: usize = 128;
/// A verifier trusts the current key and, during a rotation, the previous one.
pub const MAX_VERIFYING_KEYS: usize = 2;

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

/// For reading the role from a database column (`#[sqlx(try_from = "String")]`).
impl TryFrom<String> for Role {
    type Error = Error;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<i64>,
    iss: String,
    aud: String,
}

/// The id of a verifying key, as a token's `kid` names it: derived from the
/// key (HMAC secret, or public key) unless configured.
pub fn key_id(key: &DecodingKey) -> String {
    let mut hash = Sha256::new();
    hash.update(b"presence jwt key id\0");
    match key.kind() {
        DecodingKeyKind::SecretOrDer(bytes) => hash.update(bytes),
        DecodingKeyKind::RsaModulusExponent { n, e } => {
            hash.update(n);
            hash.update(b"\0");
            hash.update(e);
        }
    }
    let digest = hash.finalize();
    digest[..12]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The rules a token must meet besides its signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRules {
    /// `iss`, issued and required.
    pub issuer: String,
    /// `aud`, issued and required.
    pub audience: String,
    /// Longest `exp - iat` of a user's or an admin's token.
    pub max_lifetime_seconds: i64,
    /// Longest `exp - iat` of a service token.
    pub max_service_lifetime_seconds: i64,
}

impl TokenRules {
    /// The default rules for tokens issued by `issuer`.
    pub fn new(issuer: &str) -> Self {
        Self {
            issuer: issuer.to_owned(),
            audience: DEFAULT_AUDIENCE.to_owned(),
            max_lifetime_seconds: DEFAULT_MAX_LIFETIME_SECONDS,
            max_service_lifetime_seconds: DEFAULT_MAX_SERVICE_LIFETIME_SECONDS,
        }
    }

    /// The longest lifetime a token for `role` may have.
    pub fn max_lifetime(&self, role: Role) -> i64 {
        match role {
            Role::Service => self.max_service_lifetime_seconds,
            Role::User | Role::Admin => self.max_lifetime_seconds,
        }
    }
}

/// The verified identity behind a request. The user id always comes from here,
/// never from a request body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub user_id: Uuid,
    pub role: Role,
    /// The token's `jti`, the handle by which logout revokes it.
    pub token_id: String,
    /// The token's `iat`, in Unix seconds: a user disabled at or after it
    /// no longer has this token.
    pub issued_at: i64,
    /// The token's `exp`, in Unix seconds.
    pub expires_at: i64,
}

/// A key a verifier trusts, under its id.
#[derive(Debug, Clone)]
pub struct VerifyingKey {
    pub id: String,
    key: DecodingKey,
}

impl VerifyingKey {
    /// `key` under the id derived from it.
    pub fn new(key: DecodingKey) -> Self {
        Self {
            id: key_id(&key),
            key,
        }
    }

    /// `key` under a configured id.
    pub fn with_id(id: impl Into<String>, key: DecodingKey) -> Self {
        Self { id: id.into(), key }
    }
}

/// Checks tokens: header (`typ`, `kid`, the pinned `alg`), signature with the
/// key the `kid` names, `exp`, `nbf`, `iat`, `iss`, `aud`, lifetime, claims.
#[derive(Debug, Clone)]
pub struct TokenVerifier {
    algorithm: Algorithm,
    keys: Vec<VerifyingKey>,
    rules: TokenRules,
    validation: Validation,
}

impl TokenVerifier {
    /// A verifier of one key, under its derived id, with the default rules.
    pub fn new(algorithm: Algorithm, key: DecodingKey, issuer: &str) -> Self {
        Self::with_keys(
            algorithm,
            vec![VerifyingKey::new(key)],
            TokenRules::new(issuer),
        )
        .expect("one key is within the limit")
    }

    /// A verifier trusting `keys` (one, or two during a rotation; their ids
    /// must differ) under `rules`.
    pub fn with_keys(
        algorithm: Algorithm,
        keys: Vec<VerifyingKey>,
        rules: TokenRules,
    ) -> Result<Self, Error> {
        if keys.is_empty() || keys.len() > MAX_VERIFYING_KEYS {
            return Err(Error::InvalidConfig(format!(
                "a token verifier needs 1 to {MAX_VERIFYING_KEYS} keys"
            )));
        }
        if keys.len() == 2 && keys[0].id == keys[1].id {
            return Err(Error::InvalidConfig(
                "the current and the previous JWT keys are the same key (or have the same id)"
                    .into(),
            ));
        }
        let mut validation = Validation::new(algorithm);
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        validation.set_issuer(&[&rules.issuer]);
        validation.set_audience(&[&rules.audience]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECONDS as u64;
        Ok(Self {
            algorithm,
            keys,
            rules,
            validation,
        })
    }

    pub fn rules(&self) -> &TokenRules {
        &self.rules
    }

    /// The ids of the keys this verifier trusts, current first.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|key| key.id.as_str())
    }

    /// Verifies `token` now.
    pub fn verify(&self, token: &str) -> Result<Caller, Error> {
        self.verify_at(token, chrono::Utc::now().timestamp())
    }

    /// Verifies `token` as of `now` (Unix seconds) for the checks this crate
    /// makes itself (`iat`); any defect is `Error::InvalidToken` with a reason
    /// for the log (the client only ever hears "invalid token").
    fn verify_at(&self, token: &str, now: i64) -> Result<Caller, Error> {
        let invalid = |reason: &str| Error::InvalidToken(reason.to_owned());
        if token.len() > MAX_TOKEN_BYTES {
            return Err(invalid("token too long"));
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|error| Error::InvalidToken(error.to_string()))?;
        if header.alg != self.algorithm {
            return Err(invalid("algorithm not accepted"));
        }
        let typ_ok = header.typ.as_deref().is_some_and(|typ| {
            typ.eq_ignore_ascii_case(ACCESS_TOKEN_TYPE)
                || typ.eq_ignore_ascii_case("application/at+jwt")
        });
        if !typ_ok {
            return Err(invalid("typ is not at+jwt"));
        }
        let kid = header.kid.as_deref().ok_or_else(|| invalid("no kid"))?;
        let key = self
            .keys
            .iter()
            .find(|key| key.id == kid)
            .ok_or_else(|| invalid("kid names no trusted key"))?;
        let claims = jsonwebtoken::decode::<Claims>(token, &key.key, &self.validation)
            .map_err(|error| Error::InvalidToken(error.to_string()))?
            .claims;
        if claims.iat > now + LEEWAY_SECONDS {
            return Err(invalid("iat is in the future"));
        }
        if claims.exp.saturating_sub(claims.iat) > self.rules.max_lifetime(claims.role) {
            return Err(invalid("lifetime longer than allowed"));
        }
        // The jti becomes a Redis key and a PostgreSQL value: visible ASCII only.
        if claims.jti.is_empty()
            || claims.jti.len() > MAX_TOKEN_ID_CHARS
            || !claims.jti.bytes().all(|byte| byte.is_ascii_graphic())
        {
            return Err(invalid("jti must be 1 to 128 visible ASCII characters"));
        }
        Ok(Caller {
            user_id: claims.sub,
            role: claims.role,
            token_id: claims.jti,
            issued_at: claims.iat,
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
#[derive(Debug, Clone)]
pub struct TokenIssuer {
    key: EncodingKey,
    key_id: String,
    algorithm: Algorithm,
    rules: TokenRules,
    lifetime_seconds: i64,
}

impl TokenIssuer {
    /// An issuer with the default rules. The `kid` is derived from the key
    /// as `key_id` derives it from the matching verifying key: right for an
    /// HMAC secret; for RS256/EdDSA set the public key's id with `with_key_id`.
    pub fn new(
        algorithm: Algorithm,
        key: EncodingKey,
        issuer: &str,
        lifetime_seconds: i64,
    ) -> Self {
        let key_id = key_id(&DecodingKey::from_secret(key.inner()));
        Self {
            key,
            key_id,
            algorithm,
            rules: TokenRules::new(issuer),
            lifetime_seconds,
        }
    }

    /// The `kid` put in every token's header.
    pub fn with_key_id(self, key_id: impl Into<String>) -> Self {
        Self {
            key_id: key_id.into(),
            ..self
        }
    }

    /// The rules whose `iss`, `aud` and maximum lifetimes the tokens follow.
    pub fn with_rules(self, rules: TokenRules) -> Self {
        Self { rules, ..self }
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn lifetime_seconds(&self) -> i64 {
        self.lifetime_seconds
    }

    /// Signs a token for `user_id` as `role`, issued at `now`. A lifetime
    /// longer than verifiers accept for `role` is a configuration error.
    pub fn issue(&self, user_id: Uuid, role: Role, now: i64) -> Result<IssuedToken, Error> {
        if self.lifetime_seconds > self.rules.max_lifetime(role) {
            return Err(Error::InvalidConfig(format!(
                "a {} token of {} s would outlive the maximum of {} s",
                role.as_str(),
                self.lifetime_seconds,
                self.rules.max_lifetime(role)
            )));
        }
        let claims = Claims {
            sub: user_id,
            role,
            jti: Uuid::new_v4().simple().to_string(),
            exp: now + self.lifetime_seconds,
            iat: now,
            nbf: Some(now),
            iss: self.rules.issuer.clone(),
            aud: self.rules.audience.clone(),
        };
        let mut header = Header::new(self.algorithm);
        header.typ = Some(ACCESS_TOKEN_TYPE.to_owned());
        header.kid = Some(self.key_id.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.key).map_err(Error::Signing)?;
        Ok(IssuedToken {
            token,
            expires_at: claims.exp,
            token_id: claims.jti,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const OTHER_SECRET: &[u8] = b"fedcba9876543210fedcba9876543210";

    #[test]
    fn printing_an_issuer_or_a_verifier_shows_no_key_material() {
        let (issuer, verifier) = pair();
        let secret = std::str::from_utf8(SECRET).unwrap();
        // Debug of the bytes, as a derived impl would print a Vec<u8>.
        let bytes = format!("{:?}", &SECRET[..8])
            .trim_end_matches(']')
            .to_owned();
        for printed in [format!("{issuer:?}"), format!("{verifier:?}")] {
            assert!(!printed.contains(secret), "{printed}");
            assert!(!printed.contains(&bytes), "{printed}");
            assert!(printed.contains("redacted"), "{printed}");
        }
    }

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

    /// Signs `claims` with `SECRET` under a chosen header.
    fn forge(claims: serde_json::Value, typ: Option<&str>, kid: Option<&str>) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.typ = typ.map(str::to_owned);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(SECRET)).unwrap()
    }

    fn good_claims() -> serde_json::Value {
        json!({"sub": Uuid::new_v4(), "role": "user", "jti": "j1", "iat": now(), "nbf": now(),
               "exp": now() + 600, "iss": "presence", "aud": DEFAULT_AUDIENCE})
    }

    fn with(claim: &str, value: serde_json::Value) -> serde_json::Value {
        let mut claims = good_claims();
        claims[claim] = value;
        claims
    }

    fn kid() -> String {
        key_id(&DecodingKey::from_secret(SECRET))
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
        let header = jsonwebtoken::decode_header(&issued.token).unwrap();
        assert_eq!(header.typ.as_deref(), Some(ACCESS_TOKEN_TYPE));
        assert_eq!(header.kid, Some(kid()));
    }

    #[test]
    fn a_hand_made_token_with_every_rule_met_verifies() {
        let (_, verifier) = pair();
        let token = forge(good_claims(), Some("at+jwt"), Some(&kid()));
        assert!(verifier.verify(&token).is_ok());
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
    fn a_token_for_another_audience_is_refused() {
        let (_, verifier) = pair();
        let kid = kid();
        for aud in [json!("billing"), json!(["billing", "crm"]), json!(null)] {
            let token = forge(with("aud", aud.clone()), Some("at+jwt"), Some(&kid));
            assert!(verifier.verify(&token).is_err(), "aud {aud}");
        }
    }

    #[test]
    fn a_token_of_another_type_is_refused() {
        let (_, verifier) = pair();
        let kid = kid();
        for typ in [None, Some("JWT"), Some("id_token+jwt")] {
            let token = forge(good_claims(), typ, Some(&kid));
            assert!(verifier.verify(&token).is_err(), "typ {typ:?}");
        }
    }

    #[test]
    fn a_token_issued_or_valid_only_in_the_future_is_refused() {
        let (_, verifier) = pair();
        let kid = kid();
        let later = now() + 120;
        for claims in [with("iat", json!(later)), with("nbf", json!(later))] {
            let token = forge(claims.clone(), Some("at+jwt"), Some(&kid));
            assert!(verifier.verify(&token).is_err(), "{claims}");
        }
        let no_iat = {
            let mut claims = good_claims();
            claims.as_object_mut().unwrap().remove("iat");
            claims
        };
        assert!(
            verifier
                .verify(&forge(no_iat, Some("at+jwt"), Some(&kid)))
                .is_err()
        );
    }

    #[test]
    fn a_token_living_longer_than_the_maximum_is_refused() {
        let (_, verifier) = pair();
        let kid = kid();
        let too_long = with("exp", json!(now() + DEFAULT_MAX_LIFETIME_SECONDS + 60));
        assert!(
            verifier
                .verify(&forge(too_long.clone(), Some("at+jwt"), Some(&kid)))
                .is_err()
        );
        // The same lifetime is fine for a service token, whose maximum is longer.
        let mut service = too_long;
        service["role"] = json!("service");
        assert!(
            verifier
                .verify(&forge(service, Some("at+jwt"), Some(&kid)))
                .is_ok()
        );
    }

    #[test]
    fn an_issuer_refuses_to_sign_beyond_the_maximum_lifetime() {
        let issuer = TokenIssuer::new(
            Algorithm::HS256,
            EncodingKey::from_secret(SECRET),
            "presence",
            DEFAULT_MAX_LIFETIME_SECONDS + 1,
        );
        assert!(issuer.issue(Uuid::new_v4(), Role::User, now()).is_err());
        assert!(issuer.issue(Uuid::new_v4(), Role::Service, now()).is_ok());
    }

    #[test]
    fn a_kid_that_names_no_trusted_key_is_refused() {
        let (_, verifier) = pair();
        for kid in [None, Some("nope")] {
            let token = forge(good_claims(), Some("at+jwt"), kid);
            assert!(verifier.verify(&token).is_err(), "kid {kid:?}");
        }
    }

    #[test]
    fn tokens_of_both_keys_verify_during_a_rotation_and_only_the_new_after() {
        let old = TokenIssuer::new(
            Algorithm::HS256,
            EncodingKey::from_secret(OTHER_SECRET),
            "presence",
            60,
        );
        let (new, _) = pair();
        let during = TokenVerifier::with_keys(
            Algorithm::HS256,
            vec![
                VerifyingKey::new(DecodingKey::from_secret(SECRET)),
                VerifyingKey::new(DecodingKey::from_secret(OTHER_SECRET)),
            ],
            TokenRules::new("presence"),
        )
        .unwrap();
        let old_token = old.issue(Uuid::new_v4(), Role::User, now()).unwrap().token;
        let new_token = new.issue(Uuid::new_v4(), Role::User, now()).unwrap().token;
        assert!(during.verify(&old_token).is_ok());
        assert!(during.verify(&new_token).is_ok());

        let (_, after) = pair();
        assert!(after.verify(&old_token).is_err());
        assert!(after.verify(&new_token).is_ok());
    }

    #[test]
    fn a_verifier_refuses_the_same_key_twice_or_more_than_two() {
        let key = || VerifyingKey::new(DecodingKey::from_secret(SECRET));
        let rules = TokenRules::new("presence");
        assert!(
            TokenVerifier::with_keys(Algorithm::HS256, vec![key(), key()], rules.clone()).is_err()
        );
        assert!(TokenVerifier::with_keys(Algorithm::HS256, vec![], rules).is_err());
    }

    #[test]
    fn an_unsigned_token_is_refused() {
        let (_, verifier) = pair();
        // {"alg":"none","typ":"at+jwt"} . {"sub":...,"role":"admin",...} . (no signature)
        let header = "eyJhbGciOiJub25lIiwidHlwIjoiYXQrand0In0";
        let body = "eyJzdWIiOiIwMDAwMDAwMC0wMDAwLTAwMDAtMDAwMC0wMDAwMDAwMDAwMDAiLCJyb2xlIjoiYWRtaW4iLCJqdGkiOiJ4IiwiZXhwIjo0MTAyNDQ0ODAwLCJpYXQiOjAsImlzcyI6InByZXNlbmNlIn0";
        assert!(verifier.verify(&format!("{header}.{body}.")).is_err());
    }

    #[test]
    fn a_jti_that_is_empty_too_long_or_not_visible_ascii_is_refused() {
        let (_, verifier) = pair();
        let kid = kid();
        for jti in [
            json!(""),
            json!("x".repeat(129)),
            json!("a b"),
            json!("nul\u{0}"),
        ] {
            let token = forge(with("jti", jti.clone()), Some("at+jwt"), Some(&kid));
            assert!(verifier.verify(&token).is_err(), "jti {jti}");
        }
    }

    #[test]
    fn a_huge_token_is_refused_without_parsing() {
        let (_, verifier) = pair();
        assert!(verifier.verify(&"a".repeat(MAX_TOKEN_BYTES + 1)).is_err());
    }
}
