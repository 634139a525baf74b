//! A browser-realistic load generator (not a test): the whole stack, as the
//! system tests start it, and `--browsers` simulated browsers pinging it as
//! the web app does (web/src/pinger.ts). Each browser is a user of its own
//! (seeded in one set-based INSERT) with a token of its own and one
//! keep-alive connection of its own, HTTP/1.1 or, for `--h2c-share` of them,
//! HTTP/2 cleartext; it pings once at its start phase (the phases spread
//! evenly over one interval), then every `ping_interval_seconds` the answer
//! names, +-10 % jitter each time; a failure is retried with the web app's
//! backoff, UNAUTHENTICATED ends it. `--churn-per-minute` of them reload
//! each minute: the connection dropped at a random moment, a new one opened
//! and a ping sent at once.
//!
//! Once every browser has had a ping acknowledged (at most about one
//! interval), `--seconds` are measured: pings offered, sent and answered,
//! latency, outcomes, and for each process its RSS at idle (before the
//! browsers) and with every browser connected, its CPU over 10 s at idle
//! and over the window, and the CPU per ping (also above the idle rate). Printed as a table, and written as JSON with `--json`. Figures:
//! docs/benchmarks.md, "Browser-realistic load". Run by
//! `deploy/local/browsers.sh`.
//!
//! It always starts its own stack: a running one would need its database
//! (to add the users) and its token key (to sign their tokens), and a
//! Login per browser costs an argon2id check each.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use clap::Parser;
use parking_lot::Mutex;
use presence_proto::activity::{PingRequest, PingResponse};
use presence_system_tests::grpc_web::{CallError, Protocol, WebClient};
use presence_system_tests::load::{PING, PING_DEADLINE};
use presence_system_tests::measure::{Rng, evenly_chosen, percentile};
use presence_system_tests::process::{
    clock_ticks_per_second, cpu_ticks, raise_open_files_limit, rss_kib,
};
use presence_system_tests::stack::{Options, Stack, env};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::Code;

/// Open files this process and the gateway need besides one per browser
/// (listeners, the stack's own connections, logs, the runtime).
const FILES_BESIDES_BROWSERS: u64 = 1024;
/// Browsers per loopback source address: one address has about 28,000
/// ephemeral ports (`ip_local_port_range`) towards the one gateway port.
const BROWSERS_PER_SOURCE: usize = 16_384;
/// The web app's ping jitter, and its first retry's cap (web/src/pinger.ts).
const JITTER: f64 = 0.1;
const FIRST_RETRY_CAP: Duration = Duration::from_secs(1);
/// Used when an answer names no interval, as the web app does.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// How long each process's CPU is measured at idle, before the browsers.
const IDLE_WINDOW: Duration = Duration::from_secs(10);

#[derive(Debug, Parser)]
#[command(
    name = "browsers",
    about = "Simulated browsers pinging the whole stack (started here) through the gateway, \
             with each process's RSS per connection and CPU per ping"
)]
struct Args {
    /// Simulated browsers: each with a user, a token and a connection of its own.
    #[arg(long, env = "BROWSERS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    browsers: u32,
    /// Seconds measured, once every browser is connected.
    #[arg(long, env = "BROWSERS_SECONDS", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    seconds: u64,
    /// Share (0.0-1.0) of browsers speaking gRPC-Web over HTTP/2 cleartext
    /// (prior knowledge) instead of HTTP/1.1.
    #[arg(long, env = "BROWSERS_H2C_SHARE", default_value_t = 0.0, value_parser = share)]
    h2c_share: f64,
    /// Share (0.0-1.0) of browsers that drop their connection and reconnect
    /// (a reload: new connection, ping at once) each minute.
    #[arg(long, env = "BROWSERS_CHURN_PER_MINUTE", default_value_t = 0.0, value_parser = share)]
    churn_per_minute: f64,
    /// The ping interval the services tell browsers (production: 60); lower
    /// it for more pings in a short run.
    #[arg(long, env = "PRESENCE_PING_INTERVAL_SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u32).range(1..=3600))]
    ping_interval_seconds: u32,
    /// Every browser signed in as the same user (one token), as the
    /// saturation benchmark pings: the per-user work (token cache, rate
    /// limiter, Redis keys) then stays in cache, and the difference from a
    /// run with a user per browser is what distinct users cost.
    #[arg(long, env = "BROWSERS_SAME_USER")]
    same_user: bool,
    /// Also write the report as JSON to this file.
    #[arg(long, env = "BROWSERS_JSON")]
    json: Option<PathBuf>,
}

fn share(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if (0.0..=1.0).contains(&value) => Ok(value),
        _ => Err(format!("{text:?} is not a share between 0.0 and 1.0")),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Before any socket and any child: the services inherit the limit.
    let limit = match raise_open_files_limit() {
        Ok(limit) => limit,
        Err(error) => {
            eprintln!("browsers: {error}");
            return ExitCode::FAILURE;
        }
    };
    let needed = u64::from(args.browsers) + FILES_BESIDES_BROWSERS;
    if limit < needed {
        eprintln!(
            "browsers: {} browsers need about {needed} open files in this process and in the \
             gateway, but the hard limit (ulimit -Hn) is {limit}: at most {} browsers here. \
             Raise the hard limit (as root: `ulimit -Hn {needed}` in the shell that runs this, \
             LimitNOFILE= in a systemd unit, or nofile in /etc/security/limits.conf).",
            args.browsers,
            limit.saturating_sub(FILES_BESIDES_BROWSERS)
        );
        return ExitCode::FAILURE;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    runtime.block_on(run(args, limit))
}

/// What the browsers record, shared by all of them.
#[derive(Debug, Default)]
struct Shared {
    /// Pings are counted only while the window is open.
    measuring: AtomicBool,
    /// Browsers that have had a ping acknowledged.
    acknowledged_once: AtomicUsize,
    /// Connections open now.
    open: AtomicUsize,
    window: Mutex<Window>,
}

#[derive(Debug, Default)]
struct Window {
    /// Latency of every ping answered (well or not), in microseconds.
    latencies_us: Vec<u64>,
    outcomes: BTreeMap<String, u64>,
    reloads: u64,
    /// The interval the last answer named, in seconds.
    interval_seconds: u32,
}

impl Shared {
    fn record(&self, took: Duration, outcome: &Result<PingResponse, CallError>) {
        if !self.measuring.load(Ordering::Relaxed) {
            return;
        }
        let label = match outcome {
            Ok(_) => "OK".to_owned(),
            Err(error) => error.label(),
        };
        let mut window = self.window.lock();
        window.latencies_us.push(took.as_micros() as u64);
        *window.outcomes.entry(label).or_default() += 1;
        if let Ok(answer) = outcome {
            window.interval_seconds = answer.ping_interval_seconds;
        }
    }
}

/// One process measured: its name and pid.
struct Measured {
    name: &'static str,
    pid: u32,
}

async fn run(args: Args, open_files_limit: u64) -> ExitCode {
    let browsers = args.browsers as usize;
    let interval = args.ping_interval_seconds.to_string();
    let ping_env = env(&[("PRESENCE_PING_INTERVAL_SECONDS", &interval)]);
    // Every browser's connection, and some room for the stack's own; idle
    // connections are kept for two intervals (the web app's reuse).
    let max_connections = (browsers + 256).to_string();
    let idle = (2 * u64::from(args.ping_interval_seconds))
        .max(120)
        .to_string();
    let setup_started = Instant::now();
    let stack = Stack::start(Options {
        load_users: browsers,
        activity_env: ping_env.clone(),
        admin_env: ping_env,
        gateway_env: env(&[
            ("PRESENCE_MAX_CONNECTIONS", &max_connections),
            ("PRESENCE_IDLE_TIMEOUT_SECONDS", &idle),
        ]),
        ..Options::default()
    })
    .await;
    let processes = [
        Measured {
            name: "gateway",
            pid: stack.gateway.pid(),
        },
        Measured {
            name: "activity",
            pid: stack.activity[0].pid(),
        },
        Measured {
            name: "admin",
            pid: stack.admin[0].pid(),
        },
        Measured {
            name: "redis",
            pid: stack.redis_pid().await,
        },
        Measured {
            name: "load generator",
            pid: std::process::id(),
        },
    ];
    let h2c = (0..browsers)
        .filter(|index| evenly_chosen(*index, args.h2c_share))
        .count();
    println!(
        "browsers: stack up with {browsers} users in {:.1} s; open-file limit {open_files_limit}; \
         {} over HTTP/1.1, {h2c} over h2c, ping interval {} s, churn {} per minute",
        setup_started.elapsed().as_secs_f64(),
        browsers - h2c,
        args.ping_interval_seconds,
        args.churn_per_minute
    );
    // The stack's own work with no browser (timers, health, history
    // writer): at a browser's rate it is a large part of each process's CPU.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_before: Vec<Option<u64>> = processes.iter().map(|p| cpu_ticks(p.pid)).collect();
    tokio::time::sleep(IDLE_WINDOW).await;
    let idle_after: Vec<Option<u64>> = processes.iter().map(|p| cpu_ticks(p.pid)).collect();
    let rss_idle: Vec<u64> = processes
        .iter()
        .map(|process| rss_kib(process.pid).unwrap_or(0))
        .collect();

    let shared = Arc::new(Shared::default());
    let (stop, stopped) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let period = Duration::from_secs(u64::from(args.ping_interval_seconds));
    let ramp_started = Instant::now();
    let gateway = stack.gateway_address();
    for (index, user) in stack.users.iter().enumerate() {
        let browser = Browser {
            index,
            token: if args.same_user {
                stack.users[0].token.clone()
            } else {
                user.token.clone()
            },
            gateway,
            protocol: if evenly_chosen(index, args.h2c_share) {
                Protocol::H2c
            } else {
                Protocol::Http1
            },
            source: source_address(gateway, index),
            churn_per_minute: args.churn_per_minute,
            shared: shared.clone(),
        };
        let first = ramp_started + period * index as u32 / browsers as u32;
        tasks.spawn(browser.run(first, period, stopped.clone()));
    }

    // Every browser has pinged once after about one interval; the slowest
    // may be retrying.
    let ramp_deadline = ramp_started + period + period / 2 + Duration::from_secs(30);
    loop {
        let done = shared.acknowledged_once.load(Ordering::Relaxed);
        if done >= browsers || Instant::now() >= ramp_deadline {
            println!(
                "browsers: {done} of {browsers} acknowledged after {:.0} s, {} connections open",
                ramp_started.elapsed().as_secs_f64(),
                shared.open.load(Ordering::Relaxed)
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let connected_at_start = shared.acknowledged_once.load(Ordering::Relaxed);

    let load_before = load_average();
    let cpu_before: Vec<Option<u64>> = processes.iter().map(|p| cpu_ticks(p.pid)).collect();
    let window_started = Instant::now();
    shared.measuring.store(true, Ordering::Relaxed);
    let window_length = Duration::from_secs(args.seconds);
    while window_started.elapsed() < window_length {
        let left = window_length.saturating_sub(window_started.elapsed());
        tokio::time::sleep(left.min(Duration::from_secs(30))).await;
        if !left.is_zero() {
            println!(
                "browsers: t+{:.0} s of {} s, {} connections open",
                window_started.elapsed().as_secs_f64(),
                args.seconds,
                shared.open.load(Ordering::Relaxed)
            );
        }
    }
    shared.measuring.store(false, Ordering::Relaxed);
    let measured = window_started.elapsed().as_secs_f64();
    let cpu_after: Vec<Option<u64>> = processes.iter().map(|p| cpu_ticks(p.pid)).collect();
    let rss_connected: Vec<u64> = processes
        .iter()
        .map(|process| rss_kib(process.pid).unwrap_or(0))
        .collect();
    let load_after = load_average();
    let open_at_end = shared.open.load(Ordering::Relaxed);

    stop.send_replace(true);
    let stopped_in_time = tokio::time::timeout(PING_DEADLINE * 2, async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .is_ok();
    if !stopped_in_time {
        tasks.abort_all();
    }

    let window = std::mem::take(&mut *shared.window.lock());
    let mut latencies = window.latencies_us;
    latencies.sort_unstable();
    let answered = latencies.len() as u64;
    let ok = window.outcomes.get("OK").copied().unwrap_or(0);
    let errors: BTreeMap<&String, &u64> = window
        .outcomes
        .iter()
        .filter(|(label, _)| label.as_str() != "OK")
        .collect();
    let told = if window.interval_seconds == 0 {
        args.ping_interval_seconds
    } else {
        window.interval_seconds
    };
    let offered = browsers as f64 / f64::from(told);
    let ms = |us: u64| us as f64 / 1000.0;
    let (p50, p99, max) = (
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(0),
    );
    let ticks = clock_ticks_per_second() as f64;

    let mut report = String::new();
    let _ = writeln!(
        report,
        "{browsers} browsers ({} HTTP/1.1, {h2c} h2c), ping interval {told} s (+-10 %), churn {} \
         per minute, {}; {connected_at_start} connected before the window, {open_at_end} open at \
         its end",
        browsers - h2c,
        args.churn_per_minute,
        if args.same_user {
            "all as one user"
        } else {
            "a user each"
        }
    );
    let _ = writeln!(
        report,
        "window {measured:.1} s: pings offered {offered:.1}/s, answered {:.1}/s, OK {:.1}/s; \
         reloads {}",
        answered as f64 / measured,
        ok as f64 / measured,
        window.reloads
    );
    let _ = writeln!(
        report,
        "latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; errors: {}",
        ms(p50),
        ms(p99),
        ms(max),
        if errors.is_empty() {
            "none".to_owned()
        } else {
            format!("{errors:?}")
        }
    );
    let _ = writeln!(
        report,
        "load average (1 min) {:.2} before the window, {:.2} after",
        load_before, load_after
    );
    let _ = writeln!(report);
    let _ = writeln!(
        report,
        "| process | RSS idle MiB | RSS connected MiB | KiB per connection (Δ / N) | \
         CPU % of a core, idle | CPU % of a core, window | CPU s, window | CPU µs per ping | \
         above idle |"
    );
    let _ = writeln!(report, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut per_process = Vec::new();
    for (index, process) in processes.iter().enumerate() {
        let seconds_between = |before: Option<u64>, after: Option<u64>| match (before, after) {
            (Some(before), Some(after)) => Some(after.saturating_sub(before) as f64 / ticks),
            _ => None,
        };
        let cpu_seconds = seconds_between(cpu_before[index], cpu_after[index]);
        let idle_share = seconds_between(idle_before[index], idle_after[index])
            .map(|seconds| seconds / IDLE_WINDOW.as_secs_f64());
        let per_ping_us = cpu_seconds
            .filter(|_| answered > 0)
            .map(|seconds| seconds * 1e6 / answered as f64);
        // What the pings added to the idle work.
        let above_idle_us = cpu_seconds
            .zip(idle_share)
            .filter(|_| answered > 0)
            .map(|(seconds, idle)| (seconds - idle * measured).max(0.0) * 1e6 / answered as f64);
        let per_connection_kib =
            (rss_connected[index] as f64 - rss_idle[index] as f64) / browsers as f64;
        let _ = writeln!(
            report,
            "| {} | {:.1} | {:.1} | {:.1} | {} | {} | {} | {} | {} |",
            process.name,
            rss_idle[index] as f64 / 1024.0,
            rss_connected[index] as f64 / 1024.0,
            per_connection_kib,
            idle_share.map_or("?".to_owned(), |share| format!("{:.1}", share * 100.0)),
            cpu_seconds.map_or("?".to_owned(), |s| format!("{:.1}", s * 100.0 / measured)),
            cpu_seconds.map_or("?".to_owned(), |s| format!("{s:.2}")),
            per_ping_us.map_or("?".to_owned(), |us| format!("{us:.0}")),
            above_idle_us.map_or("?".to_owned(), |us| format!("{us:.0}")),
        );
        per_process.push(json!({
            "name": process.name,
            "pid": process.pid,
            "rss_idle_kib": rss_idle[index],
            "rss_connected_kib": rss_connected[index],
            "rss_per_connection_kib": per_connection_kib,
            "cpu_seconds": cpu_seconds,
            "cpu_share_of_a_core": cpu_seconds.map(|s| s / measured),
            "cpu_share_of_a_core_idle": idle_share,
            "cpu_us_per_ping_above_idle": above_idle_us,
            "cpu_us_per_ping": per_ping_us,
        }));
    }
    let _ = writeln!(
        report,
        "(the load generator's figures include the in-process TCP proxies standing for the \
         services' Kubernetes Services)"
    );
    println!("\n{report}");

    if let Some(path) = &args.json {
        let document = json!({
            "browsers": browsers,
            "http1": browsers - h2c,
            "h2c": h2c,
            "ping_interval_seconds": told,
            "churn_per_minute": args.churn_per_minute,
            "same_user": args.same_user,
            "window_seconds": measured,
            "connected_before_window": connected_at_start,
            "open_at_end": open_at_end,
            "pings_offered_per_second": offered,
            "pings_answered_per_second": answered as f64 / measured,
            "pings_ok_per_second": ok as f64 / measured,
            "outcomes": window.outcomes,
            "reloads": window.reloads,
            "latency_ms": { "p50": ms(p50), "p99": ms(p99), "max": ms(max) },
            "load_average": { "before": load_before, "after": load_after },
            "open_files_limit": open_files_limit,
            "processes": per_process,
        });
        let text = serde_json::to_string_pretty(&document).expect("JSON of plain values");
        if let Err(error) = std::fs::write(path, text + "\n") {
            eprintln!("browsers: cannot write {}: {error}", path.display());
            return ExitCode::FAILURE;
        }
        println!("browsers: JSON written to {}", path.display());
    }
    let all_connected = connected_at_start == browsers && open_at_end == browsers;
    if all_connected && errors.is_empty() && stopped_in_time {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "browsers: not every browser was connected and answered (see above): exit status 1"
        );
        ExitCode::FAILURE
    }
}

/// The loopback address browser `index` connects from: 127.0.0.1 for the
/// first `BROWSERS_PER_SOURCE`, then 127.0.0.2, and so on (only towards a
/// loopback gateway).
fn source_address(gateway: SocketAddr, index: usize) -> Option<IpAddr> {
    if !gateway.ip().is_loopback() || !gateway.is_ipv4() {
        return None;
    }
    let host = 1 + index / BROWSERS_PER_SOURCE;
    let host = u8::try_from(host.min(254)).expect("at most 254");
    Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, host)))
}

/// The 1-minute load average (/proc/loadavg): another job on the machine shows here.
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// One simulated browser tab.
struct Browser {
    index: usize,
    token: String,
    gateway: SocketAddr,
    protocol: Protocol,
    source: Option<IpAddr>,
    churn_per_minute: f64,
    shared: Arc<Shared>,
}

impl Browser {
    /// Pings first at `first`, then as the answers say, until `stop`.
    async fn run(self, first: Instant, period: Duration, mut stop: watch::Receiver<bool>) {
        let mut rng = Rng::new(0x5EED ^ (self.index as u64).wrapping_mul(0x9E37_79B9));
        let mut client: Option<WebClient> = None;
        let mut next = first;
        let mut interval = period;
        let mut failures = 0;
        let mut acknowledged = false;
        loop {
            // A reload before the next ping, with the chance of the share
            // per minute over the time until it.
            let wait = next.saturating_duration_since(Instant::now());
            let reload_at = (client.is_some()
                && self.churn_per_minute > 0.0
                && rng.chance((self.churn_per_minute * wait.as_secs_f64() / 60.0).min(1.0)))
            .then(|| Instant::now() + wait.mul_f64(rng.next_f64()));
            tokio::select! {
                biased;
                _ = stop.wait_for(|stop| *stop) => return,
                () = tokio::time::sleep_until(reload_at.unwrap_or(next)) => {}
            }
            if reload_at.is_some() {
                self.drop_connection(&mut client);
                if self.shared.measuring.load(Ordering::Relaxed) {
                    self.shared.window.lock().reloads += 1;
                }
            }
            let sent = Instant::now();
            let outcome = self.ping(&mut client).await;
            self.shared.record(sent.elapsed(), &outcome);
            match outcome {
                Ok(answer) => {
                    failures = 0;
                    if !acknowledged {
                        acknowledged = true;
                        self.shared
                            .acknowledged_once
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    interval = match answer.ping_interval_seconds {
                        0 => DEFAULT_INTERVAL,
                        seconds => Duration::from_secs(u64::from(seconds)),
                    };
                    next = Instant::now() + rng.jittered(interval, JITTER);
                }
                // The session is over: the web app stops pinging.
                Err(error) if error.code() == Some(Code::Unauthenticated) => {
                    self.drop_connection(&mut client);
                    return;
                }
                Err(_) => {
                    self.drop_connection(&mut client);
                    failures += 1;
                    next = Instant::now() + rng.backoff(failures, FIRST_RETRY_CAP, interval);
                }
            }
        }
    }

    async fn ping(&self, client: &mut Option<WebClient>) -> Result<PingResponse, CallError> {
        if !client.as_ref().is_some_and(WebClient::is_open) {
            self.drop_connection(client);
            *client = Some(WebClient::open(self.gateway, self.protocol, self.source).await?);
            self.shared.open.fetch_add(1, Ordering::Relaxed);
        }
        let client = client.as_mut().expect("connected just now");
        // Each simulated browser has its own id, as the web app's browsers do.
        let request = PingRequest {
            browser_id: format!("load-browser-{:010}", self.index),
            idle: None,
        };
        client
            .unary(PING, Some(&self.token), &request, PING_DEADLINE)
            .await
    }

    fn drop_connection(&self, client: &mut Option<WebClient>) {
        if client.take().is_some() {
            self.shared.open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}
