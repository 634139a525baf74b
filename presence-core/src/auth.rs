//! Authentication of gRPC calls: the `authorization: Bearer <jwt>` metadata
//! turned into a verified `Caller`.

use tonic::metadata::MetadataMap;

use crate::Error;
use crate::token::{Caller, TokenVerifier};

/// Verifies the bearer token carried by a call's metadata.
pub fn authenticate(verifier: &TokenVerifier, metadata: &MetadataMap) -> Result<Caller, Error> {
    let value = metadata
        .get("authorization")
        .ok_or_else(|| Error::InvalidToken("no authorization metadata".into()))?
        .to_str()
        .map_err(|_| Error::InvalidToken("authorization metadata is not text".into()))?;
    let token = bearer_token(value)
        .ok_or_else(|| Error::InvalidToken("authorization is not a Bearer token".into()))?;
    verifier.verify(token)
}

/// The token of an `authorization: Bearer <token>` value.
pub fn bearer_token(authorization: &str) -> Option<&str> {
    authorization
        .strip_prefix("Bearer ")
        .or_else(|| authorization.strip_prefix("bearer "))
        .map(str::trim)
}
