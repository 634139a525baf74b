//! The admin replica that records the online count hangs (SIGSTOP: its
//! connection to PostgreSQL stays open, nothing answers on it). The promise:
//! PostgreSQL ends its silent session, another replica takes the writer lock
//! and the samples go on, and when the hung replica wakes up it does not
//! become a second writer.

use std::time::Duration;

use presence_system_tests::stack::{Options, Stack, env};
use presence_system_tests::{eventually, now};
use presence_testkit::online_history;
use tokio::time::Instant;

/// A sample every 2 s: the writer's session may be silent 12 s.
const SAMPLE_SECONDS: &str = "2";
/// Generous: the session limit is 12 s, a lock attempt every second.
const HANDOVER_WITHIN: Duration = Duration::from_secs(90);

async fn writers(stack: &Stack) -> Vec<String> {
    online_history::writers(&stack.pool).await
}

async fn samples_since(stack: &Stack, since: i64) -> i64 {
    online_history::samples_since(&stack.pool, since).await
}

#[tokio::test]
async fn a_hung_history_writer_hands_over_and_does_not_come_back_as_a_second_one() {
    let stack = Stack::start(Options {
        admin_replicas: 2,
        load_users: 10,
        admin_env: env(&[("PRESENCE_ONLINE_SAMPLE_SECONDS", SAMPLE_SECONDS)]),
        ..Options::default()
    })
    .await;
    let writer = eventually(
        HANDOVER_WITHIN,
        "one replica holds the writer lock",
        || async {
            match writers(&stack).await.as_slice() {
                [one] => Some(one.clone()),
                _ => None,
            }
        },
    )
    .await;
    let (hung, kept) = if writer.ends_with(&stack.admin[0].address.to_string()) {
        (&stack.admin[0], &stack.admin[1])
    } else {
        (&stack.admin[1], &stack.admin[0])
    };
    assert!(
        writer.ends_with(&hung.address.to_string()),
        "{writer} is no replica of this stack"
    );

    hung.pause();
    let paused = Instant::now();
    let kept_name = writer.replace(&hung.address.to_string(), &kept.address.to_string());
    eventually(
        HANDOVER_WITHIN,
        "the other replica takes the writer lock",
        || async { writers(&stack).await == [kept_name.clone()] },
    )
    .await;
    let handover = paused.elapsed();
    let since = now();
    eventually(
        HANDOVER_WITHIN,
        "samples go on from the other replica",
        || async { samples_since(&stack, since).await >= 2 },
    )
    .await;

    hung.resume();
    // Awake, it finds its session gone and the lock taken: still one writer,
    // and still the same, over several of its attempts.
    let resumed = now();
    eventually(
        HANDOVER_WITHIN,
        "samples after the hung replica woke up",
        || async { samples_since(&stack, resumed).await >= 3 },
    )
    .await;
    assert_eq!(writers(&stack).await, [kept_name]);
    stack.report(
        "history_writer_hung",
        &format!(
            "writer lock handed over {:.1} s after the writer hung (session limit 12 s)",
            handover.as_secs_f64()
        ),
    );
}
