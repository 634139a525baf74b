use presence_core::token::Role;
use presence_proto::activity::RecordActivityRequest;
use tonic::Code;
use uuid::Uuid;

use presence_testkit::authorized;

use crate::helpers::spawn_app;

fn service_token(service_id: Uuid) -> String {
    presence_testkit::test_token(service_id, Role::Service)
}

fn request(user_id: &str) -> RecordActivityRequest {
    RecordActivityRequest {
        user_id: user_id.into(),
    }
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_service_records_activity_for_a_user(pool: sqlx::PgPool) {
    let mut app = spawn_app(pool).await;
    let service = app.create_user("billing", Role::Service).await;
    let user_id = app.create_user("usertest1", Role::User).await.to_string();

    app.client
        .record_activity(authorized(request(&user_id), &service_token(service)))
        .await
        .unwrap();

    assert!(app.last_activity(&user_id).await.is_some());
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_user_token_cannot_record_activity(pool: sqlx::PgPool) {
    let mut app = spawn_app(pool).await;
    let user = app.create_user("usertest1", Role::User).await.to_string();
    let victim = app.create_user("usertest2", Role::User).await.to_string();
    let token = app.login("usertest1").await.access_token;
    let after_login = app.written_keys().await;

    let status = app
        .client
        .record_activity(authorized(request(&victim), &token))
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(app.written_keys().await, after_login);
    assert_eq!(app.last_activity(&victim).await, None);
    let indexed: Vec<String> = app
        .presence_index()
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(indexed, vec![user]);
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn bad_or_unknown_user_ids_are_reported(pool: sqlx::PgPool) {
    let mut app = spawn_app(pool).await;
    let token = service_token(app.create_user("billing", Role::Service).await);

    let malformed = app
        .client
        .record_activity(authorized(request("42"), &token))
        .await
        .unwrap_err();
    let unknown = app
        .client
        .record_activity(authorized(request(&Uuid::new_v4().to_string()), &token))
        .await
        .unwrap_err();

    assert_eq!(malformed.code(), Code::InvalidArgument);
    assert_eq!(unknown.code(), Code::NotFound);
    assert_eq!(app.written_keys().await, Vec::<String>::new());
}
