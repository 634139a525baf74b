//! The JWT rules every service applies (RFC 8725): typ, aud, iat, nbf, a
//! maximum lifetime, a kid naming a trusted key; and a key rotation that
//! signs no one out.

use jsonwebtoken::Algorithm;
use presence_core::token::{DEFAULT_AUDIENCE, Role, TokenIssuer, key_id};
use presence_proto::activity::PingRequest;
use presence_testkit::authorized;
use serde_json::json;
use tonic::Code;
use uuid::Uuid;

use crate::helpers::{
    Options, SECRET, forge_token, forge_token_with, now, spawn_app, spawn_app_with, valid_claims,
};

const OLD_SECRET: &str = "old-secret-old-secret-old-secret-0123";

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn login_tokens_carry_the_access_token_type_the_audience_and_the_key_id(pool: sqlx::PgPool) {
    let mut app = spawn_app(pool).await;
    app.create_user("usertest1", Role::User).await;
    let token = app.login("usertest1").await.access_token;

    let header = jsonwebtoken::decode_header(&token).unwrap();
    let claims: serde_json::Value = jsonwebtoken::dangerous::insecure_decode(&token)
        .unwrap()
        .claims;

    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(
        header.kid,
        Some(key_id(&jsonwebtoken::DecodingKey::from_secret(
            SECRET.as_bytes()
        )))
    );
    assert_eq!(claims["aud"], json!(DEFAULT_AUDIENCE));
    assert_eq!(claims["nbf"], claims["iat"]);
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_token_breaking_any_jwt_rule_is_refused_and_writes_nothing(pool: sqlx::PgPool) {
    let mut app = spawn_app(pool).await;
    let user_id = app.create_user("usertest1", Role::User).await;
    let claims = || valid_claims(user_id);
    let with = |name: &str, value: serde_json::Value| {
        let mut claims = claims();
        claims[name] = value;
        claims
    };
    let kid = key_id(&jsonwebtoken::DecodingKey::from_secret(SECRET.as_bytes()));
    let signed = |claims: serde_json::Value| forge_token(claims, Algorithm::HS256, SECRET);
    let under = |typ: Option<&str>, kid: Option<&str>| {
        forge_token_with(claims(), Algorithm::HS256, SECRET, typ, kid)
    };
    let cases = [
        ("no typ", under(None, Some(&kid))),
        ("typ JWT", under(Some("JWT"), Some(&kid))),
        ("no kid", under(Some("at+jwt"), None)),
        (
            "a kid that names no key",
            under(Some("at+jwt"), Some("retired-key")),
        ),
        ("another audience", signed(with("aud", json!("billing")))),
        ("no audience", {
            let mut claims = claims();
            claims.as_object_mut().unwrap().remove("aud");
            signed(claims)
        }),
        (
            "issued in the future",
            signed(with("iat", json!(now() + 300))),
        ),
        (
            "not valid before later",
            signed(with("nbf", json!(now() + 300))),
        ),
        ("no iat", {
            let mut claims = claims();
            claims.as_object_mut().unwrap().remove("iat");
            signed(claims)
        }),
        (
            "lives longer than the maximum",
            signed(with("exp", json!(now() + 24 * 3600 + 600))),
        ),
    ];
    // The same claims under the right header do verify: each case breaks one
    // rule. (Then the keys of that ping are cleared, for the check below.)
    app.ping_once_vouched(&signed(claims())).await.unwrap();
    app.lose_redis_data().await;
    for (case, token) in cases {
        let status = app
            .client
            .ping(authorized(PingRequest::default(), &token))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{case}: {status:?}");
    }
    assert_eq!(app.written_keys().await, Vec::<String>::new());
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn tokens_of_the_previous_key_work_during_a_rotation_and_stop_once_it_is_removed(
    pool: sqlx::PgPool,
) {
    let mut before = spawn_app(pool.clone()).await;
    let user_id = before.create_user("usertest1", Role::User).await;
    let old_issuer = TokenIssuer::new(
        Algorithm::HS256,
        jsonwebtoken::EncodingKey::from_secret(OLD_SECRET.as_bytes()),
        "presence",
        600,
    );
    let old_token = old_issuer.issue(user_id, Role::User, now()).unwrap().token;

    // During the overlap: the new key signs, both keys verify.
    let mut during = spawn_app_with(
        pool.clone(),
        Options {
            prefix: Some(before.prefix.clone()),
            extra_args: vec![format!("--jwt-previous-secret={OLD_SECRET}")],
            ..Options::default()
        },
    )
    .await;
    let new_token = during.login("usertest1").await.access_token;
    during.ping_once_vouched(&old_token).await.unwrap();
    during.ping_once_vouched(&new_token).await.unwrap();

    // After it: the old key is gone, and so are its tokens.
    let refused = before.ping_once_vouched(&old_token).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    before.ping_once_vouched(&new_token).await.unwrap();
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_service_token_may_live_longer_than_a_users_but_not_beyond_its_own_maximum(
    pool: sqlx::PgPool,
) {
    let app = spawn_app(pool).await;
    let service = app.create_user("billing", Role::Service).await;
    let claims = |lifetime: i64| {
        let mut claims = valid_claims(service);
        claims["role"] = json!("service");
        claims["exp"] = json!(now() + lifetime);
        claims
    };
    let record = |token: String| {
        let mut client = app.client.clone();
        async move {
            client
                .record_activity(authorized(
                    presence_proto::activity::RecordActivityRequest {
                        user_id: Uuid::new_v4().to_string(),
                    },
                    &token,
                ))
                .await
                .unwrap_err()
                .code()
        }
    };

    // Thirty days: past a user's maximum, within a service's (the user id is unknown).
    let thirty_days = forge_token(claims(30 * 24 * 3600), Algorithm::HS256, SECRET);
    let two_years = forge_token(claims(2 * 366 * 24 * 3600), Algorithm::HS256, SECRET);

    assert_eq!(record(thirty_days).await, Code::NotFound);
    assert_eq!(record(two_years).await, Code::Unauthenticated);
}
