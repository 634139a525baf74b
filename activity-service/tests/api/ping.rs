use jsonwebtoken::Algorithm;
use presence_core::token::Role;
use presence_proto::activity::PingRequest;
use serde_json::json;
use tonic::Code;
use uuid::Uuid;

use presence_testkit::authorized;

use crate::helpers::{SECRET, forge_token, forge_token_with, now, spawn_app};
use presence_core::token::key_id;

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn ping_writes_a_fresh_timestamp_that_lives_twice_the_threshold(pool: sqlx::PgPool) {
    let mut app = spawn_app(pool).await;
    let user_id = app.create_user("usertest1", Role::User).await.to_string();
    let token = app.login("usertest1").await.access_token;

    let before = now();
    let response = app
        .client
        .ping(authorized(PingRequest::default(), &token))
        .await
        .unwrap()
        .into_inner();

    let recorded = app.last_activity(&user_id).await.expect("the key exists");
    assert!(recorded >= before && recorded <= now());
    let ttl = app.ttl(&app.last_activity_key(&user_id)).await;
    assert!((1790..=1800).contains(&ttl), "TTL {ttl} is not 2 × 15 min");
    assert_eq!(response.threshold_minutes, 15);
    assert_eq!(response.ping_interval_seconds, 60);
    assert!(response.server_time.unwrap().seconds >= before);
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_second_ping_moves_the_timestamp_forward(pool: sqlx::PgPool) {
    let mut app = spawn_app(pool).await;
    let user_id = app.create_user("usertest1", Role::User).await.to_string();
    let token = app.login("usertest1").await.access_token;

    app.client
        .ping(authorized(PingRequest::default(), &token))
        .await
        .unwrap();
    let first = app.last_activity(&user_id).await.unwrap();
    // The scenario: timestamps are whole seconds, so let the next one start.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    app.client
        .ping(authorized(PingRequest::default(), &token))
        .await
        .unwrap();
    let second = app.last_activity(&user_id).await.unwrap();

    assert!(second > first, "{second} is not after {first}");
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn ping_updates_the_presence_index_and_clears_the_logout_marker(pool: sqlx::PgPool) {
    let mut app = spawn_app(pool).await;
    let user_id = app.create_user("usertest1", Role::User).await.to_string();
    let token = app.login("usertest1").await.access_token;
    let marker = app.last_logout_key(&user_id);
    redis::AsyncCommands::set::<_, _, ()>(&mut app.redis, &marker, 1)
        .await
        .unwrap();

    app.client
        .ping(authorized(PingRequest::default(), &token))
        .await
        .unwrap();

    let index = app.keys.presence_index();
    let score: Option<i64> = redis::AsyncCommands::zscore(&mut app.redis, &index, &user_id)
        .await
        .unwrap();
    assert_eq!(score, app.last_activity(&user_id).await);
    let marker_left: bool = redis::AsyncCommands::exists(&mut app.redis, &marker)
        .await
        .unwrap();
    assert!(!marker_left);
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn bad_tokens_are_refused_and_write_nothing(pool: sqlx::PgPool) {
    let mut app = spawn_app(pool).await;
    let user_id = Uuid::new_v4();
    let claims = |exp: i64| json!({"sub": user_id, "role": "user", "jti": "j1", "exp": exp, "iat": exp - 600, "iss": "presence", "aud": presence_core::token::DEFAULT_AUDIENCE});
    let unsigned = {
        use base64_like::encode;
        format!(
            "{}.{}.",
            encode(r#"{"alg":"none","typ":"at+jwt"}"#),
            encode(&claims(now() + 600).to_string())
        )
    };
    let cases = [
        ("malformed", Some("not-a-jwt".to_owned())),
        (
            "expired",
            Some(forge_token(claims(now() - 3600), Algorithm::HS256, SECRET)),
        ),
        (
            "wrong signature",
            // The test key's id, signed with another secret.
            Some(forge_token_with(
                claims(now() + 600),
                Algorithm::HS256,
                "another-secret-another-secret-0123",
                Some("at+jwt"),
                Some(&key_id(&jsonwebtoken::DecodingKey::from_secret(
                    SECRET.as_bytes(),
                ))),
            )),
        ),
        ("alg none", Some(unsigned)),
        (
            "wrong algorithm",
            Some(forge_token(claims(now() + 600), Algorithm::HS512, SECRET)),
        ),
        (
            "no jti",
            Some(forge_token(
                json!({"sub": user_id, "role": "user", "exp": now() + 600, "iat": now(), "iss": "presence", "aud": presence_core::token::DEFAULT_AUDIENCE}),
                Algorithm::HS256,
                SECRET,
            )),
        ),
        ("missing", None),
    ];
    for (case, token) in cases {
        let request = match &token {
            Some(token) => authorized(PingRequest::default(), token),
            None => tonic::Request::new(PingRequest::default()),
        };
        let status = app.client.ping(request).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{case}: {status:?}");
    }
    assert_eq!(app.written_keys().await, Vec::<String>::new());
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_user_disabled_in_sql_loses_their_tokens_within_seconds_until_a_fresh_login(
    pool: sqlx::PgPool,
) {
    let mut app = spawn_app(pool).await;
    app.create_user("usertest1", Role::User).await;
    let old_token = app.login("usertest1").await.access_token;
    app.ping_once_vouched(&old_token).await.unwrap();

    // Disabled by hand, not through the CLI: the trigger still notes it.
    sqlx::query("UPDATE users SET disabled = true WHERE username = 'usertest1'")
        .execute(&app.pool)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        match app.ping_once_vouched(&old_token).await {
            Err(status) if status.code() == Code::Unauthenticated => break,
            answer => assert!(
                tokio::time::Instant::now() < deadline,
                "a disabled user's token still pings: {answer:?}"
            ),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // Tokens issued in the second of the disabling go too; sign in afresh after it.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    sqlx::query("UPDATE users SET disabled = false WHERE username = 'usertest1'")
        .execute(&app.pool)
        .await
        .unwrap();
    let new_token = app.login("usertest1").await.access_token;
    app.ping_once_vouched(&new_token).await.unwrap();
    let old = app.ping_once_vouched(&old_token).await.unwrap_err();
    assert_eq!(
        old.code(),
        Code::Unauthenticated,
        "re-enabling revives no old token"
    );
}

/// Base64url without padding, enough to hand-build an `alg: none` token.
mod base64_like {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    pub fn encode(text: &str) -> String {
        let bytes = text.as_bytes();
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }
}
