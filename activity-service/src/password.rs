//! Password hashing with argon2id. Hashing is deliberately slow, so it runs on
//! the blocking pool and never stalls the threads serving pings.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use crate::error::ActivityError;

/// A valid argon2id hash of a random password: verifying against it when the
/// username is unknown costs the same time as a real check, so response time
/// does not reveal which usernames exist.
const DECOY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$4B/3VKsIC+b0VCMhiAyYxbxoT3aH3S5fBiSsBDhkeQg";

pub async fn hash(password: String) -> Result<String, ActivityError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|error| ActivityError::Internal(format!("hashing failed: {error}")))
    })
    .await
    .map_err(|error| ActivityError::Internal(error.to_string()))?
}

/// True when `password` matches `stored_hash`; with no hash (unknown user) it
/// checks against a decoy and returns false.
pub async fn verify(password: String, stored_hash: Option<String>) -> Result<bool, ActivityError> {
    tokio::task::spawn_blocking(move || {
        let known = stored_hash.is_some();
        let hash_text = stored_hash.unwrap_or_else(|| DECOY_HASH.to_owned());
        let parsed = PasswordHash::new(&hash_text)
            .map_err(|error| ActivityError::Internal(format!("stored hash unreadable: {error}")))?;
        let matches = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        Ok(known && matches)
    })
    .await
    .map_err(|error| ActivityError::Internal(error.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let stored = hash("Test1234!".into()).await.unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(
            verify("Test1234!".into(), Some(stored.clone()))
                .await
                .unwrap()
        );
        assert!(!verify("test1234!".into(), Some(stored)).await.unwrap());
    }

    #[tokio::test]
    async fn an_unknown_user_never_verifies() {
        assert!(!verify("anything".into(), None).await.unwrap());
    }
}
