use std::time::{Duration, Instant};

use presence_core::token::Role;
use presence_proto::activity::PingRequest;
use presence_proto::admin::{
    GetActivitySettingsRequest, StatusFilter, UpdateActivitySettingsRequest,
};
use presence_testkit::authorized;
use tonic::Code;

use crate::helpers::spawn_stack;

fn set(minutes: Option<u32>) -> UpdateActivitySettingsRequest {
    UpdateActivitySettingsRequest {
        threshold_minutes: minutes,
        ..Default::default()
    }
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn the_threshold_defaults_to_fifteen_minutes(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    let settings = stack
        .admin
        .get_activity_settings(authorized(
            GetActivitySettingsRequest {},
            &stack.admin_token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(settings.threshold_minutes, 15);
    assert_eq!(settings.updated_by, "");
    assert_eq!(settings.ping_interval_seconds, 60);
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_change_is_saved_audited_and_reported(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool.clone()).await;

    let updated = stack
        .admin
        .update_activity_settings(authorized(set(Some(5)), &stack.admin_token))
        .await
        .unwrap()
        .into_inner();
    let read_back = stack
        .admin
        .get_activity_settings(authorized(
            GetActivitySettingsRequest {},
            &stack.admin_token,
        ))
        .await
        .unwrap()
        .into_inner();

    assert_eq!(updated.threshold_minutes, 5);
    assert_eq!(read_back.threshold_minutes, 5);
    assert_eq!(read_back.updated_by, "admintest1");
    assert!(read_back.updated_at.is_some());
    let audit: Vec<(String, String, String, Option<String>)> = sqlx::query_as(
        "SELECT a.setting, a.old_value, a.new_value, u.username
         FROM settings_audit a LEFT JOIN users u ON u.id = a.changed_by",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        audit,
        [(
            "threshold_minutes".into(),
            "15".into(),
            "5".into(),
            Some("admintest1".into())
        )]
    );
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn out_of_range_or_missing_thresholds_are_refused_and_change_nothing(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool.clone()).await;
    for minutes in [Some(0), Some(1441), Some(100_000), None] {
        let status = stack
            .admin
            .update_activity_settings(authorized(set(minutes), &stack.admin_token))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{minutes:?}");
        assert!(
            status.message().contains("1 to 1440"),
            "{}",
            status.message()
        );
    }
    let audit_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM settings_audit")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(audit_rows, 0);
    let threshold: i32 = sqlx::query_scalar("SELECT threshold_minutes FROM settings")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(threshold, 15);
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_change_reaches_the_other_replicas_by_notification(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    let mut replica = stack.spawn_admin_replica().await;
    stack.create_user("usertest1", Role::User).await;
    let login = stack.login("usertest1").await;
    let admin_token = stack.admin_token.clone();
    // Both replicas have read the default before the change.
    assert_eq!(
        stack.list(StatusFilter::All, 1, "").await.threshold_minutes,
        15
    );

    stack
        .admin
        .update_activity_settings(authorized(set(Some(3)), &admin_token))
        .await
        .unwrap();
    // Generous, yet well short of the 30 s periodic re-read: only the change
    // notification can bring it this soon.
    let deadline = Instant::now() + Duration::from_secs(10);

    let (mut replica_sees, mut activity_sees) = (false, false);
    while Instant::now() < deadline && !(replica_sees && activity_sees) {
        let listing = replica
            .list_user_statuses(authorized(Default::default(), &admin_token))
            .await
            .unwrap()
            .into_inner();
        replica_sees = listing.threshold_minutes == 3;
        let ping = stack
            .activity
            .ping(authorized(PingRequest::default(), &login.access_token))
            .await
            .unwrap()
            .into_inner();
        activity_sees = ping.threshold_minutes == 3;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    assert!(
        replica_sees,
        "the second admin replica still uses the old threshold"
    );
    assert!(
        activity_sees,
        "the activity service still uses the old threshold"
    );
    let key = stack.keys.last_activity(login.user_id.parse().unwrap());
    let ttl: i64 = redis::AsyncCommands::ttl(&mut stack.redis, key)
        .await
        .unwrap();
    assert!(
        (350..=360).contains(&ttl),
        "the next ping's TTL {ttl} is not 2 × 3 min"
    );
}
