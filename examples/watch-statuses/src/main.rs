//! `watch-statuses`: an example back-end client of the admin service. A chat,
//! till or scheduling service that reacts to users coming online or leaving
//! follows `presence.admin.v1.AdminService/WatchUserStatuses` with the token
//! of a `service` account, as this program does, and prints one line per
//! event:
//!
//! ```text
//! online  alice (0b9c…) via activity, 2 browsers
//! online  bob (5e1f…) via login
//! away    alice (0b9c…) via activity, 2 browsers
//! snapshot complete
//! offline alice (0b9c…)
//! resync
//! ```
//!
//! The stream starts with everyone online now (the snapshot), then
//! `snapshot complete`, then each change as it happens; after `resync` the
//! watcher missed changes and a fresh snapshot follows (forget what you knew).
//! When the stream ends with UNAVAILABLE (the server stops, or cannot be
//! reached) it reconnects after a pause that doubles up to
//! `--max-backoff-seconds`, and a new snapshot follows. A refused token
//! (UNAUTHENTICATED: expired, revoked, wrongly signed) or a role that may not
//! watch (PERMISSION_DENIED: a `user` token) ends it with a message and exit
//! status 1; any other error too.
//!
//! ```sh
//! export PRESENCE_SERVICE_TOKEN=$(activity-service token issue --username chat --days 30)
//! cargo run -p watch-statuses -- --admin-url http://127.0.0.1:50052
//! ```

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use presence_proto::admin::admin_service_client::AdminServiceClient;
use presence_proto::admin::{
    PresenceState, StatusSource, UserStatusEvent, WatchUserStatusesRequest,
};
use secrecy::{ExposeSecret, SecretString};
use tonic::metadata::MetadataValue;
use tonic::transport::Endpoint;
use tonic::{Code, Status};

const TOKEN_VARIABLE: &str = "PRESENCE_SERVICE_TOKEN";
/// The first pause before a reconnection; it doubles on each failure in a row.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Prints a line for every user coming online or going offline, from the admin \
             service's WatchUserStatuses stream.",
    after_help = "Environment:\n  PRESENCE_SERVICE_TOKEN  the bearer token of a `service` account \
                  (`activity-service token issue --username <account>`); required, never printed"
)]
struct Args {
    /// The admin service's gRPC address.
    #[arg(
        long,
        env = "PRESENCE_ADMIN_URL",
        default_value = "http://127.0.0.1:50052"
    )]
    admin_url: String,
    /// How long to wait for the connection and for the stream to open, in seconds.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=300))]
    connect_timeout_seconds: u64,
    /// The longest pause between two reconnection attempts, in seconds.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    max_backoff_seconds: u64,
}

/// Why one stream ended.
enum Ended {
    /// Worth reconnecting; `watched` says whether the stream got as far as its
    /// snapshot (then the next attempt starts from the first pause again).
    Retry { reason: String, watched: bool },
    /// Reconnecting would not help: the message says what to fix.
    Fatal(String),
    /// Standard output is closed: nobody reads the lines any more.
    OutputClosed,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let token = match std::env::var(TOKEN_VARIABLE) {
        Ok(token) if !token.trim().is_empty() => SecretString::from(token.trim().to_owned()),
        _ => {
            eprintln!(
                "watch-statuses: set {TOKEN_VARIABLE} to the token of a `service` account \
                 (activity-service token issue --username <account>)"
            );
            return ExitCode::from(2);
        }
    };
    let timeout = Duration::from_secs(args.connect_timeout_seconds);
    let endpoint = match Endpoint::from_shared(args.admin_url.clone()) {
        // HTTP/2 pings while idle: a peer that vanished without closing the
        // connection is noticed within seconds, so no read waits forever.
        Ok(endpoint) => endpoint
            .connect_timeout(timeout)
            .tcp_keepalive(Some(Duration::from_secs(30)))
            .http2_keep_alive_interval(Duration::from_secs(15))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true),
        Err(error) => {
            eprintln!("watch-statuses: --admin-url {}: {error}", args.admin_url);
            return ExitCode::from(2);
        }
    };
    let max_backoff = Duration::from_secs(args.max_backoff_seconds);
    let mut backoff = FIRST_BACKOFF.min(max_backoff);
    loop {
        let ended = tokio::select! {
            ended = watch_once(&endpoint, &token, timeout) => ended,
            _ = tokio::signal::ctrl_c() => return ExitCode::SUCCESS,
        };
        match ended {
            Ended::Retry { reason, watched } => {
                if watched {
                    backoff = FIRST_BACKOFF.min(max_backoff);
                }
                eprintln!(
                    "watch-statuses: {reason}; reconnecting in {:.1} s",
                    backoff.as_secs_f64()
                );
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = tokio::signal::ctrl_c() => return ExitCode::SUCCESS,
                }
                backoff = (backoff * 2).min(max_backoff);
            }
            Ended::Fatal(message) => {
                eprintln!("watch-statuses: {message}");
                return ExitCode::FAILURE;
            }
            Ended::OutputClosed => return ExitCode::SUCCESS,
        }
    }
}

/// Connects, opens the stream and prints its events until it ends.
async fn watch_once(endpoint: &Endpoint, token: &SecretString, timeout: Duration) -> Ended {
    let channel = match endpoint.connect().await {
        Ok(channel) => channel,
        Err(error) => {
            return Ended::Retry {
                reason: format!("cannot reach {}: {}", endpoint.uri(), describe(&error)),
                watched: false,
            };
        }
    };
    let mut request = tonic::Request::new(WatchUserStatusesRequest {});
    let Ok(bearer) = MetadataValue::try_from(format!("Bearer {}", token.expose_secret())) else {
        return Ended::Fatal(format!("{TOKEN_VARIABLE} holds characters no token has"));
    };
    request.metadata_mut().insert("authorization", bearer);
    let mut client = AdminServiceClient::new(channel);
    // Not the request's own deadline: that would bound the whole stream.
    let opened = tokio::time::timeout(timeout, client.watch_user_statuses(request)).await;
    let mut stream = match opened {
        Err(_) => {
            return Ended::Retry {
                reason: format!("the stream did not open within {} s", timeout.as_secs()),
                watched: false,
            };
        }
        Ok(Err(status)) => return ended_by(&status, false),
        Ok(Ok(response)) => response.into_inner(),
    };
    let mut watched = false;
    loop {
        match stream.message().await {
            Ok(Some(event)) => {
                watched |= event.snapshot_complete;
                let Some(line) = line(&event) else { continue };
                let mut out = std::io::stdout().lock();
                if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                    return Ended::OutputClosed;
                }
            }
            Ok(None) => {
                return Ended::Retry {
                    reason: "the server ended the stream".into(),
                    watched,
                };
            }
            Err(status) => return ended_by(&status, watched),
        }
    }
}

/// What to do about a stream that ended with `status`.
fn ended_by(status: &Status, watched: bool) -> Ended {
    match status.code() {
        Code::Unavailable => Ended::Retry {
            reason: format!("the admin service is unavailable ({})", status.message()),
            watched,
        },
        Code::Unauthenticated => Ended::Fatal(format!(
            "the token was refused ({}); issue a new one with \
             `activity-service token issue --username <account>`",
            status.message()
        )),
        Code::PermissionDenied => Ended::Fatal(format!(
            "this token may not watch statuses ({}); use the token of a `service` account",
            status.message()
        )),
        code => Ended::Fatal(format!("the stream failed: {code:?}: {}", status.message())),
    }
}

/// The line printed for `event`, if it says anything.
fn line(event: &UserStatusEvent) -> Option<String> {
    if event.resync {
        return Some("resync".into());
    }
    if event.snapshot_complete {
        return Some("snapshot complete".into());
    }
    let status = event.status.as_ref()?;
    if !status.online {
        return Some(format!("offline {} ({})", status.username, status.user_id));
    }
    let via = match StatusSource::try_from(status.source) {
        Ok(StatusSource::Activity) => "activity",
        Ok(StatusSource::LoginHistory) => "login",
        _ => "unknown",
    };
    // « Absent » (idle detection on): online, but every browser idle.
    let state = if status.state == PresenceState::Away as i32 {
        "away   "
    } else {
        "online "
    };
    let browsers = match status.active_browsers {
        0 | 1 => String::new(),
        count => format!(", {count} browsers"),
    };
    Some(format!(
        "{state} {} ({}) via {via}{browsers}",
        status.username, status.user_id
    ))
}

/// An error with its causes: a transport error's own text is only
/// "transport error".
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        // Layers often repeat their cause's text; once is enough.
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
