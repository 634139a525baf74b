//! The soak (not a test): the whole stack, as the system tests start it,
//! under a steady ping load through the gateway for `SOAK_SECONDS` (default
//! 600), with an admin watching the live statuses and listing them every
//! sample; every 10 s each process's RSS is sampled. Prints the samples as
//! a table, writes it to `target/soak-rss.txt`, and says for each process
//! whether its memory grew after the warm-up (exit status 1 if one did).
//! Run by `deploy/local/soak.sh`.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use presence_proto::admin::StatusFilter;
use presence_system_tests::load;
use presence_system_tests::process::rss_kib;
use presence_system_tests::stack::{Options, Stack};
use presence_system_tests::watcher::Watcher;
use tokio::time::Instant;

const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// Each user pings this often (200 users: about 330 pings a second).
const PING_PERIOD: Duration = Duration::from_millis(600);
/// Memory settles (allocator pools, connection buffers, caches filled)
/// within this long, or a third of a shorter run.
const WARM_UP: Duration = Duration::from_secs(60);
/// Growth after the warm-up taken for noise: this much, or this share of
/// the size at the warm-up's end, whichever is larger.
const NOISE_KIB: u64 = 4 * 1024;
const NOISE_SHARE: f64 = 0.05;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|value| {
            value
                .parse()
                .unwrap_or_else(|_| panic!("{name} must be a whole number, not {value:?}"))
        })
        .unwrap_or(default)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let run = Duration::from_secs(setting("SOAK_SECONDS", 600));
    let users = setting("SOAK_USERS", 200) as usize;
    let warm_up = WARM_UP.min(run / 3);
    let stack = Stack::start(Options {
        load_users: users,
        ..Options::default()
    })
    .await;
    let watcher = Watcher::start(stack.gateway_address(), stack.admin_token.clone());
    let processes = [
        ("activity", stack.activity[0].pid()),
        ("admin", stack.admin[0].pid()),
        ("gateway", stack.gateway.pid()),
        ("redis", stack.redis_pid().await),
    ];
    let load = stack.start_load(PING_PERIOD);
    println!(
        "soak: {users} users pinging every {PING_PERIOD:?} through the gateway for {run:?}, \
         RSS sampled every {SAMPLE_EVERY:?} (warm-up {warm_up:?})"
    );

    let started = Instant::now();
    let mut samples: Vec<(Duration, Vec<u64>)> = Vec::new();
    let mut listings_failed = 0;
    loop {
        let at = started.elapsed();
        let row: Vec<u64> = processes
            .iter()
            .map(|(name, pid)| rss_kib(*pid).unwrap_or_else(|| panic!("{name} exited")))
            .collect();
        println!("{}", table_row(at, &row));
        samples.push((at, row));
        if at >= run {
            break;
        }
        if stack.list(StatusFilter::All, "").await.is_err() {
            listings_failed += 1;
        }
        tokio::time::sleep_until(started + SAMPLE_EVERY * samples.len() as u32).await;
    }
    let records = load.stop().await;
    let streams = watcher.streams().len();

    let mut report = String::new();
    let names: Vec<&str> = processes.iter().map(|(name, _)| *name).collect();
    let _ = writeln!(report, "RSS in MiB, every {SAMPLE_EVERY:?}");
    let _ = writeln!(
        report,
        "{:>7} {}",
        "t (s)",
        names.iter().map(|n| format!("{n:>9}")).collect::<String>()
    );
    for (at, row) in &samples {
        let _ = writeln!(report, "{}", table_row(*at, row));
    }
    let baseline = samples
        .iter()
        .find(|(at, _)| *at >= warm_up)
        .map_or(&samples[0].1, |(_, row)| row);
    let last = &samples[samples.len() - 1].1;
    let mut grew = false;
    for (index, name) in names.iter().enumerate() {
        let (from, to) = (baseline[index], last[index]);
        let noise = NOISE_KIB.max((from as f64 * NOISE_SHARE) as u64);
        let growth = to as i64 - from as i64;
        let verdict = if growth > noise as i64 {
            grew = true;
            "GREW"
        } else {
            "no growth"
        };
        let _ = writeln!(
            report,
            "{name}: {:.1} MiB after the warm-up, {:.1} MiB at the end ({:+.1} MiB): {verdict}",
            from as f64 / 1024.0,
            to as f64 / 1024.0,
            growth as f64 / 1024.0
        );
    }
    let _ = writeln!(
        report,
        "pings: {} ({:.0}/s), {:?}; listings failed: {listings_failed}; status streams opened: {streams}",
        records.len(),
        load::rate(&records),
        load::outcomes(&records)
    );
    println!("{report}");
    let path = presence_system_tests::binaries::target_dir().join("soak-rss.txt");
    if let Err(error) = std::fs::write(&path, &report) {
        eprintln!("soak: cannot write {}: {error}", path.display());
    } else {
        println!("soak: written to {}", path.display());
    }
    if grew {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// One line of the table: the time, then each process's RSS in MiB.
fn table_row(at: Duration, row: &[u64]) -> String {
    let cells: String = row
        .iter()
        .map(|kib| format!("{:>9.1}", *kib as f64 / 1024.0))
        .collect();
    format!("{:>7} {cells}", at.as_secs())
}
