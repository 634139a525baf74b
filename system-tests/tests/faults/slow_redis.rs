//! The network to Redis goes bad under load: the activity service reaches
//! Redis through a proxy that first adds latency (200 ms each way, above the
//! service's 100 ms Redis timeout), then becomes a blackhole (connections
//! accepted, nothing passes, nothing read), then heals. The promises: every
//! ping is answered within its deadline, acknowledged or UNAVAILABLE, never
//! left hanging; the service's memory stays bounded while Redis is silent
//! (nothing piles up per ping: each waits at most the Redis timeout, and the
//! connection's unanswered commands are bounded by what the socket buffers
//! hold); once the network heals, pings succeed again without a restart.

use std::time::Duration;

use presence_system_tests::load;
use presence_system_tests::stack::{Options, Stack, env};
use tokio::time::Instant;

use crate::{
    PING_PERIOD, RECOVERY_WITHIN, assert_every_user_ends_acknowledged, assert_outcomes_within,
    first_acknowledged_after, outcomes_line, seconds,
};

const REDIS_TIMEOUT_MS: &str = "100";
const LATENCY: Duration = Duration::from_millis(200);
const SLOW_FOR: Duration = Duration::from_secs(5);
const SILENT_FOR: Duration = Duration::from_secs(15);
/// Far above what the processes need, far below what keeping every ping of
/// the blackhole (about 5,000) with its request and connection state would.
const MEMORY_HEADROOM_KIB: u64 = 64 * 1024;

#[tokio::test]
async fn slow_then_silent_redis_answers_every_ping_in_time_with_bounded_memory_then_heals() {
    let stack = Stack::start(Options {
        redis_through_proxy: true,
        activity_env: env(&[("PRESENCE_REDIS_TIMEOUT_MS", REDIS_TIMEOUT_MS)]),
        ..Options::default()
    })
    .await;
    let proxy = stack.redis_proxy.as_ref().expect("Redis behind a proxy");
    let load = stack.start_load(PING_PERIOD);
    load.wait_for_every_user(load.started, RECOVERY_WITHIN)
        .await;

    let slowed = Instant::now();
    proxy.set_latency(LATENCY);
    tokio::time::sleep(SLOW_FOR).await;

    let activity = &stack.activity[0];
    let (activity_before, gateway_before) = (activity.rss_kib(), stack.gateway.rss_kib());
    let silenced = Instant::now();
    proxy.blackhole();
    let (mut activity_peak, mut gateway_peak) = (activity_before, gateway_before);
    let mut samples = Vec::new();
    while silenced.elapsed() < SILENT_FOR {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (activity_now, gateway_now) = (activity.rss_kib(), stack.gateway.rss_kib());
        activity_peak = activity_peak.max(activity_now);
        gateway_peak = gateway_peak.max(gateway_now);
        samples.push(format!("{}/{}", activity_now / 1024, gateway_now / 1024));
    }

    let healed = Instant::now();
    proxy.heal();
    let pings_back = first_acknowledged_after(&load, healed, RECOVERY_WITHIN).await;
    load.wait_for_every_user(Instant::now(), RECOVERY_WITHIN)
        .await;
    let records = load.stop().await;

    // Answered in time, one way or the other: no DEADLINE_EXCEEDED from the
    // gateway, no client deadline reached, no connection cut.
    assert_outcomes_within(&records, &["OK", "Unavailable"], slowed);
    let failed_in = |from: Instant, to: Instant| {
        records
            .iter()
            .filter(|record| record.sent >= from && record.sent < to && record.failure.is_some())
            .count()
    };
    assert!(
        failed_in(slowed + LATENCY * 4, silenced) > 0,
        "pings went on succeeding with Redis slower than its timeout: was it?"
    );
    assert!(
        failed_in(silenced, healed) > 0,
        "pings went on succeeding with Redis silent: was it?"
    );
    assert!(
        activity_peak <= activity_before + MEMORY_HEADROOM_KIB,
        "the activity service grew from {activity_before} KiB to {activity_peak} KiB while Redis was silent"
    );
    assert!(
        gateway_peak <= gateway_before + MEMORY_HEADROOM_KIB,
        "the gateway grew from {gateway_before} KiB to {gateway_peak} KiB while Redis was silent"
    );
    assert_every_user_ends_acknowledged(&records, stack.users.len());

    let slowest = records
        .iter()
        .map(|record| record.took)
        .max()
        .unwrap_or_default();
    stack.report(
        "slow_redis",
        &format!(
            "pings: {} ({:.0}/s), {}\n\
             slow ({LATENCY:?} each way, Redis timeout {REDIS_TIMEOUT_MS} ms) for {}, then silent for {}\n\
             slowest ping: {}\n\
             RSS MiB activity/gateway each second while silent: {} (before: {}/{})\n\
             after healing: pings acknowledged again in {}",
            records.len(),
            load::rate(&records),
            outcomes_line(&records),
            seconds(silenced.duration_since(slowed)),
            seconds(healed.duration_since(silenced)),
            seconds(slowest),
            samples.join(" "),
            activity_before / 1024,
            gateway_before / 1024,
            seconds(pings_back),
        ),
    );
}
