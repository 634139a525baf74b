use std::collections::HashSet;

use presence_core::token::Role;
use presence_proto::admin::{ListUserStatusesRequest, StatusFilter};
use presence_testkit::authorized;
use tonic::Code;

use crate::helpers::{now, spawn_stack};

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn pages_walk_every_user_exactly_once_in_username_order(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    for n in 0..120 {
        let id = stack.create_user(&format!("user{n:03}"), Role::User).await;
        if n % 3 == 0 {
            stack.place_activity(id, now() - 30).await;
        }
    }

    // 120 users, a third of them pinging, and the stack's admin, online by login.
    for (filter, expected) in [
        (StatusFilter::All, 121),
        (StatusFilter::Online, 41),
        (StatusFilter::Offline, 80),
    ] {
        let statuses = stack.list_all(filter, 7).await;
        let names: Vec<&str> = statuses.iter().map(|s| s.username.as_str()).collect();
        let unique: HashSet<&str> = names.iter().copied().collect();
        assert_eq!(names.len(), expected, "{filter:?}");
        assert_eq!(unique.len(), expected, "{filter:?}: a user came twice");
        assert!(
            names.windows(2).all(|pair| pair[0] < pair[1]),
            "{filter:?}: not in username order"
        );
        match filter {
            StatusFilter::Online => assert!(statuses.iter().all(|s| s.online)),
            StatusFilter::Offline => assert!(statuses.iter().all(|s| !s.online)),
            _ => {}
        }
    }
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn the_default_page_holds_fifty_users(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    for n in 0..60 {
        stack.create_user(&format!("user{n:02}"), Role::User).await;
    }
    let page = stack.list(StatusFilter::All, 0, "").await;
    assert_eq!(page.statuses.len(), 50);
    assert!(!page.next_page_token.is_empty());
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn oversized_pages_and_tampered_tokens_are_invalid_arguments(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    for n in 0..3 {
        stack.create_user(&format!("user{n}"), Role::User).await;
    }
    let first = stack.list(StatusFilter::All, 1, "").await;
    let mut tampered = first.next_page_token.clone();
    tampered.insert(tampered.len() / 2, 'x');

    let cases = [
        (501, String::new(), StatusFilter::All),
        (1, tampered, StatusFilter::All),
        (1, "garbage".to_owned(), StatusFilter::All),
        (1, first.next_page_token.clone(), StatusFilter::Online),
    ];
    for (page_size, page_token, filter) in cases {
        let request = ListUserStatusesRequest {
            page_size,
            page_token,
            filter: filter as i32,
            ..Default::default()
        };
        let status = stack
            .admin
            .list_user_statuses(authorized(request, &stack.admin_token))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    }
}
