//! Only admins see statuses and settings (services may batch-read statuses).

use presence_core::token::Role;
use presence_proto::activity::LogoutRequest;
use presence_proto::admin::{
    BatchGetUserStatusesRequest, GetActivitySettingsRequest, ListUserStatusesRequest,
    UpdateActivitySettingsRequest, WatchUserStatusesRequest,
};
use presence_testkit::authorized;
use tonic::Code;

use crate::helpers::spawn_stack;

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_user_token_is_refused_on_every_admin_method(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    let user_id = stack.create_user("usertest1", Role::User).await;
    let token = stack.login("usertest1").await.access_token;
    let admin = &mut stack.admin;

    let codes = [
        admin
            .list_user_statuses(authorized(ListUserStatusesRequest::default(), &token))
            .await
            .unwrap_err()
            .code(),
        admin
            .batch_get_user_statuses(authorized(
                BatchGetUserStatusesRequest {
                    user_ids: vec![user_id.to_string()],
                },
                &token,
            ))
            .await
            .unwrap_err()
            .code(),
        admin
            .watch_user_statuses(authorized(WatchUserStatusesRequest {}, &token))
            .await
            .err()
            .unwrap()
            .code(),
        admin
            .get_activity_settings(authorized(GetActivitySettingsRequest {}, &token))
            .await
            .unwrap_err()
            .code(),
        admin
            .update_activity_settings(authorized(
                UpdateActivitySettingsRequest {
                    threshold_minutes: Some(5),
                    ..Default::default()
                },
                &token,
            ))
            .await
            .unwrap_err()
            .code(),
    ];

    assert_eq!(codes, [Code::PermissionDenied; 5]);
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn no_token_is_unauthenticated(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    let status = stack
        .admin
        .list_user_statuses(tonic::Request::new(ListUserStatusesRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_service_token_may_batch_read_but_not_list(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    let service = stack.create_user("billing", Role::Service).await;
    let token = presence_testkit::test_token(service, Role::Service);

    let batch = stack
        .admin
        .batch_get_user_statuses(authorized(
            BatchGetUserStatusesRequest {
                user_ids: vec![service.to_string()],
            },
            &token,
        ))
        .await;
    let list = stack
        .admin
        .list_user_statuses(authorized(ListUserStatusesRequest::default(), &token))
        .await;

    assert_eq!(batch.unwrap().into_inner().statuses.len(), 1);
    assert_eq!(list.unwrap_err().code(), Code::PermissionDenied);
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn an_admin_token_stops_working_after_logout(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    let token = stack.admin_token.clone();
    stack
        .activity
        .logout(authorized(LogoutRequest::default(), &token))
        .await
        .unwrap();

    let status = stack
        .admin
        .list_user_statuses(authorized(ListUserStatusesRequest::default(), &token))
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::Unauthenticated);
}
