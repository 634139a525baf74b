//! The users page's search: `ListUserStatusesRequest.query`.

use presence_core::token::Role;
use presence_proto::admin::{ListUserStatusesRequest, ListUserStatusesResponse, StatusFilter};
use presence_testkit::{authorized, create_account};
use tonic::Code;
use uuid::Uuid;

use crate::helpers::{Stack, now, spawn_stack};

/// Adds enabled users with these (username, display name), returning their ids.
async fn insert_named(stack: &Stack, users: &[(&str, &str)]) -> Vec<Uuid> {
    let ids: Vec<Uuid> = users.iter().map(|_| Uuid::new_v4()).collect();
    let usernames: Vec<&str> = users.iter().map(|(username, _)| *username).collect();
    let display_names: Vec<&str> = users.iter().map(|(_, display)| *display).collect();
    sqlx::query(
        "INSERT INTO users (id, username, password_hash, role, display_name)
         SELECT id, username, 'unused', 'user', display_name
         FROM unnest($1::uuid[], $2::text[], $3::text[]) AS t(id, username, display_name)",
    )
    .bind(&ids)
    .bind(&usernames)
    .bind(&display_names)
    .execute(&stack.pool)
    .await
    .unwrap();
    ids
}

async fn search(
    stack: &mut Stack,
    filter: StatusFilter,
    page_size: u32,
    query: &str,
    page_token: &str,
) -> Result<ListUserStatusesResponse, tonic::Status> {
    let request = ListUserStatusesRequest {
        page_size,
        page_token: page_token.to_owned(),
        filter: filter as i32,
        query: query.to_owned(),
    };
    stack
        .admin
        .list_user_statuses(authorized(request, &stack.admin_token))
        .await
        .map(tonic::Response::into_inner)
}

/// The usernames a query finds, walking every page of `page_size`.
async fn found(
    stack: &mut Stack,
    filter: StatusFilter,
    page_size: u32,
    query: &str,
) -> Vec<String> {
    let mut names = Vec::new();
    let mut token = String::new();
    loop {
        let page = search(stack, filter, page_size, query, &token)
            .await
            .unwrap_or_else(|status| panic!("{query:?}: {status:?}"));
        names.extend(page.statuses.into_iter().map(|s| s.username));
        if page.next_page_token.is_empty() {
            return names;
        }
        token = page.next_page_token;
    }
}

fn refused(result: Result<ListUserStatusesResponse, tonic::Status>, why: &str) -> String {
    let status = result.expect_err(why);
    assert_eq!(status.code(), Code::InvalidArgument, "{why}: {status:?}");
    status.message().to_owned()
}

const PEOPLE: [(&str, &str); 5] = [
    ("edurand", "Élodie Durand"),
    ("jean.dupont", "Jean Dupont"),
    ("jean_martin", "Jean Martin"),
    ("mlod", "Marc Lodge"),
    ("zoe", "Zoé Ørsted-Müller"),
];

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn every_word_must_start_a_word_of_the_names_ignoring_case_and_accents(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    insert_named(&stack, &PEOPLE).await;

    for (query, expected) in [
        ("elodie", vec!["edurand"]),
        ("ÉLODIE", vec!["edurand"]),
        ("Elo", vec!["edurand"]),
        ("dur", vec!["edurand"]),
        ("edu", vec!["edurand"]),
        ("lod", vec!["mlod"]),
        ("elo dur", vec!["edurand"]),
        ("  dur \u{a0}  elo ", vec!["edurand"]),
        ("elo x", vec![]),
        ("jean", vec!["jean.dupont", "jean_martin"]),
        ("dupont", vec!["jean.dupont"]),
        ("martin", vec!["jean_martin"]),
        ("jean.dupont", vec!["jean.dupont"]),
        ("zoe muller", vec!["zoe"]),
        ("müll", vec!["zoe"]),
        ("upont", vec![]),
        ("xyz", vec![]),
    ] {
        assert_eq!(
            found(&mut stack, StatusFilter::All, 50, query).await,
            expected,
            "{query:?}"
        );
    }
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_blank_query_lists_everyone_and_counts_stay_those_of_all_users(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    insert_named(&stack, &PEOPLE).await;
    let everyone = found(&mut stack, StatusFilter::All, 50, "").await;
    assert_eq!(everyone.len(), PEOPLE.len() + 1, "the people and the admin");
    assert_eq!(
        found(&mut stack, StatusFilter::All, 50, "   ").await,
        everyone
    );

    let page = search(&mut stack, StatusFilter::All, 50, "elodie", "")
        .await
        .unwrap();
    assert_eq!(page.statuses.len(), 1);
    assert_eq!(page.total_count, everyone.len() as u64);
    assert_eq!(page.online_count + page.offline_count, page.total_count);
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_query_combines_with_the_status_filter(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    let ids = insert_named(
        &stack,
        &[
            ("ann.online", "Ann Smith"),
            ("ann.offline", "Ann Jones"),
            ("bob.online", "Bob Smith"),
            ("bob.offline", "Bob Jones"),
        ],
    )
    .await;
    stack.place_activity(ids[0], now() - 30).await;
    stack.place_activity(ids[2], now() - 30).await;

    for (filter, query, expected) in [
        (StatusFilter::Online, "ann", vec!["ann.online"]),
        (StatusFilter::Offline, "ann", vec!["ann.offline"]),
        (
            StatusFilter::Online,
            "smith",
            vec!["ann.online", "bob.online"],
        ),
        (StatusFilter::Offline, "smith", vec![]),
        (
            StatusFilter::Offline,
            "jones",
            vec!["ann.offline", "bob.offline"],
        ),
        (StatusFilter::All, "smith", vec!["ann.online", "bob.online"]),
    ] {
        for page_size in [1, 50] {
            assert_eq!(
                found(&mut stack, filter, page_size, query).await,
                expected,
                "{filter:?} {query:?} by {page_size}"
            );
        }
    }
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn paging_through_a_query_lists_each_match_once_in_order(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    let mut people = Vec::new();
    let mut expected = Vec::new();
    for n in 0..24 {
        let username = format!("user{n:02}");
        let display = if n % 3 == 0 {
            expected.push(username.clone());
            format!("Marie Curie {n}")
        } else {
            format!("Pierre Other {n}")
        };
        people.push((username, display));
    }
    let people: Vec<(&str, &str)> = people
        .iter()
        .map(|(username, display)| (username.as_str(), display.as_str()))
        .collect();
    insert_named(&stack, &people).await;

    assert_eq!(
        found(&mut stack, StatusFilter::All, 1, "cur").await,
        expected
    );
    assert_eq!(
        found(&mut stack, StatusFilter::Offline, 1, "marie").await,
        expected
    );
    assert_eq!(
        found(&mut stack, StatusFilter::All, 3, "mar cur").await,
        expected
    );
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_page_token_is_bound_to_its_query(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    insert_named(&stack, &PEOPLE).await;
    let first = search(&mut stack, StatusFilter::All, 1, "jean", "")
        .await
        .unwrap();
    let token = first.next_page_token;
    assert!(!token.is_empty());

    for other in ["", "dupont", "jean martin"] {
        let message = refused(
            search(&mut stack, StatusFilter::All, 1, other, &token).await,
            other,
        );
        assert_eq!(
            message,
            "page_token was issued for another query; keep the query while paging"
        );
    }
    // The same words, spaced otherwise, are the same query.
    let next = search(&mut stack, StatusFilter::All, 1, "  jean ", &token)
        .await
        .unwrap();
    assert_eq!(next.statuses[0].username, "jean_martin");

    // A token of a listing without a query does not serve a query.
    let unfiltered = search(&mut stack, StatusFilter::All, 1, "", "")
        .await
        .unwrap();
    refused(
        search(
            &mut stack,
            StatusFilter::All,
            1,
            "jean",
            &unfiltered.next_page_token,
        )
        .await,
        "token without a query",
    );

    let mut tampered = token.clone();
    tampered.insert(tampered.len() / 2, 'x');
    let message = refused(
        search(&mut stack, StatusFilter::All, 1, "jean", &tampered).await,
        "tampered",
    );
    assert!(message.contains("not issued by this service"), "{message}");
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn long_queries_and_control_characters_are_refused(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    insert_named(&stack, &PEOPLE).await;

    // 100 characters are accepted, though they take 200 bytes.
    let longest = "é".repeat(100);
    let page = search(&mut stack, StatusFilter::All, 10, &longest, "")
        .await
        .unwrap();
    assert!(page.statuses.is_empty());
    let message = refused(
        search(
            &mut stack,
            StatusFilter::All,
            10,
            &format!("{longest}e"),
            "",
        )
        .await,
        "101 characters",
    );
    assert!(message.contains("at most 100 characters"), "{message}");

    for query in [
        "jean\u{0}",
        "jean\tdupont",
        "jean\n",
        "\u{1b}[2Jjean",
        "jean\u{7f}",
    ] {
        let message = refused(
            search(&mut stack, StatusFilter::All, 10, query, "").await,
            query,
        );
        assert!(
            message.contains("control characters"),
            "{query:?}: {message}"
        );
    }
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn like_and_regex_metacharacters_are_literal(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    insert_named(&stack, &PEOPLE).await;

    for query in [
        "%",
        "_",
        "\\",
        ".",
        "*",
        "(",
        ")",
        "[",
        "a%",
        "j%n",
        "j_an",
        ".*",
        "(jean",
        "jean|zoe",
        "^jean",
        "$",
        "+",
        "?",
        "{2}",
        "[[:alpha:]]",
        "\\w",
        "'",
        "\"",
    ] {
        assert_eq!(
            found(&mut stack, StatusFilter::All, 50, query).await,
            Vec::<String>::new(),
            "{query:?}"
        );
    }

    // Once a name has them, they are found as typed.
    insert_named(
        &stack,
        &[("promo", "Promo % (50) off"), ("dots", "A .* [b] c_d")],
    )
    .await;
    for (query, expected) in [
        ("%", vec!["promo"]),
        ("(50", vec!["promo"]),
        ("(5", vec!["promo"]),
        (".*", vec!["dots"]),
        ("[b]", vec!["dots"]),
        ("_", vec![]),
        ("(", vec!["promo"]),
    ] {
        assert_eq!(
            found(&mut stack, StatusFilter::All, 50, query).await,
            expected,
            "{query:?}"
        );
    }
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn disabled_users_are_never_found(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    insert_named(&stack, &PEOPLE).await;
    create_account(&stack.pool, "jean.disabled", Role::User, true).await;
    let id = create_account(&stack.pool, "jean.later", Role::User, false).await;
    assert_eq!(
        found(&mut stack, StatusFilter::All, 50, "jean").await,
        ["jean.dupont", "jean.later", "jean_martin"]
    );
    sqlx::query("UPDATE users SET disabled = true WHERE id = $1")
        .bind(id)
        .execute(&stack.pool)
        .await
        .unwrap();
    for filter in [
        StatusFilter::All,
        StatusFilter::Online,
        StatusFilter::Offline,
    ] {
        assert!(
            !found(&mut stack, filter, 50, "jean")
                .await
                .iter()
                .any(|name| name.contains("later") || name.contains("disabled")),
            "{filter:?}"
        );
    }
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_renamed_user_is_found_by_the_new_name_only(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    let ids = insert_named(&stack, &PEOPLE).await;
    sqlx::query("UPDATE users SET display_name = 'Élise Garnier' WHERE id = $1")
        .bind(ids[0])
        .execute(&stack.pool)
        .await
        .unwrap();
    assert_eq!(
        found(&mut stack, StatusFilter::All, 50, "garn").await,
        ["edurand"]
    );
    assert!(
        found(&mut stack, StatusFilter::All, 50, "elodie")
            .await
            .is_empty()
    );
}
