//! A flood of sign-ins: password checks (about 19 MiB each) are bounded, so
//! the process stays within its pod's memory, the extra sign-ins are refused
//! as busy rather than queued without end, and pings are not held up.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use presence_proto::activity::PingRequest;
use presence_proto::activity::activity_service_client::ActivityServiceClient;
use presence_testkit::{authorized, free_port, redis_url, unique_prefix};
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::helpers::{
    Options, PASSWORD, SECRET, create_users_sharing_the_password, credentials, spawn_app_with,
};

/// The activity-service container's memory limit (deploy/k8s/base/activity-service.yaml).
const POD_MEMORY_LIMIT_KIB: u64 = 256 * 1024;
/// Generous, so a slow machine shows up as a slow test, not a failure.
const CLIENT_DEADLINE: Duration = Duration::from_secs(60);
const PING_DEADLINE: Duration = Duration::from_secs(10);
const BUSY: &str = "busy checking other sign-ins; retry in a few seconds";

/// Signs every username in at once; the answers, in no particular order.
async fn sign_in_all_at_once(
    client: &ActivityServiceClient<Channel>,
    usernames: &[String],
) -> Vec<Result<(), Status>> {
    let mut running = tokio::task::JoinSet::new();
    for username in usernames {
        let mut client = client.clone();
        let mut request = tonic::Request::new(credentials(username, PASSWORD));
        request.set_timeout(CLIENT_DEADLINE);
        running.spawn(async move { client.login(request).await.map(|_| ()) });
    }
    running.join_all().await
}

fn refused_as_busy(answers: &[Result<(), Status>]) -> usize {
    answers
        .iter()
        .filter(|answer| matches!(answer, Err(status) if status.code() == Code::ResourceExhausted))
        .count()
}

/// Every answer is a success or a "busy, retry" refusal.
fn assert_signed_in_or_busy(answers: &[Result<(), Status>]) {
    for answer in answers {
        if let Err(status) = answer {
            assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
            assert_eq!(status.message(), BUSY);
        }
    }
}

/// The activity-service binary, run as an operator would run it, killed on drop.
struct ServiceProcess {
    child: Child,
    log: PathBuf,
}

impl ServiceProcess {
    fn start(database_url: &str, port: u16, extra_env: &[(&str, &str)]) -> Self {
        let log = std::env::temp_dir().join(format!("activity-service-{port}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_activity-service"))
            .env("PRESENCE_ACTIVITY_ADDR", format!("127.0.0.1:{port}"))
            .env("DATABASE_URL", database_url)
            .env("REDIS_URL", redis_url())
            .env("PRESENCE_REDIS_KEY_PREFIX", unique_prefix())
            .env("PRESENCE_JWT_SECRET", SECRET)
            .env("RUST_LOG", "warn")
            .envs(extra_env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("a log file in the temp dir"))
            .spawn()
            .expect("the activity-service binary starts");
        Self { child, log }
    }

    async fn client(&mut self, port: u16) -> ActivityServiceClient<Channel> {
        let endpoint = Channel::from_shared(format!("http://127.0.0.1:{port}")).unwrap();
        for _ in 0..300 {
            if let Ok(channel) = endpoint.connect().await {
                return ActivityServiceClient::new(channel);
            }
            assert!(self.is_running(), "the service exited; see {:?}", self.log);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the service did not listen within 30 s; see {:?}", self.log);
    }

    fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The most memory the process has held at once (VmHWM), in KiB.
    fn peak_resident_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the process is alive");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("/proc/<pid>/status has VmHWM")
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The URL of the test's own database, for a process of its own.
fn database_url(pool: &sqlx::PgPool) -> String {
    let options = pool.connect_options();
    format!(
        "postgres://{}@{}:{}/{}",
        options.get_username(),
        options.get_host(),
        options.get_port(),
        options
            .get_database()
            .expect("sqlx::test names the database")
    )
}

#[cfg(target_os = "linux")]
#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_flood_of_sign_ins_stays_within_the_pods_memory_and_pings_keep_working(
    pool: sqlx::PgPool,
) {
    let usernames = create_users_sharing_the_password(&pool, "flood", 64).await;
    let port = free_port();
    // What the defaults are on a 2-core machine, stated so the test means
    // the same on any machine.
    let mut service = ServiceProcess::start(
        &database_url(&pool),
        port,
        &[
            ("PRESENCE_LOGIN_CONCURRENCY", "2"),
            ("PRESENCE_LOGIN_QUEUE", "4"),
        ],
    );
    let mut client = service.client(port).await;
    let token = client
        .login(credentials(&usernames[0], PASSWORD))
        .await
        .expect("a sign-in before the flood")
        .into_inner()
        .access_token;

    let flooding = Arc::new(AtomicBool::new(true));
    let pinger = tokio::spawn({
        let (mut client, flooding) = (client.clone(), flooding.clone());
        async move {
            let mut answers = Vec::new();
            while flooding.load(Ordering::SeqCst) || answers.len() < 3 {
                let mut request = authorized(PingRequest::default(), &token);
                request.set_timeout(PING_DEADLINE);
                answers.push(client.ping(request).await.map(|_| ()));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            answers
        }
    });
    let answers = sign_in_all_at_once(&client, &usernames).await;
    flooding.store(false, Ordering::SeqCst);
    let pings = pinger.await.unwrap();

    assert_signed_in_or_busy(&answers);
    assert!(refused_as_busy(&answers) > 0, "none of 64 was refused");
    assert!(refused_as_busy(&answers) < 64, "all 64 were refused");
    for ping in &pings {
        assert!(ping.is_ok(), "{ping:?}");
    }
    assert!(
        service.is_running(),
        "the service died; see {:?}",
        service.log
    );
    let peak = service.peak_resident_kib();
    assert!(
        peak < POD_MEMORY_LIMIT_KIB,
        "peak resident memory {} MiB, over the pod's 256 MiB",
        peak / 1024
    );
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn sign_ins_beyond_the_check_queue_are_refused_as_busy_rather_than_queued_forever(
    pool: sqlx::PgPool,
) {
    let options = Options {
        extra_args: vec!["--login-concurrency=1".into(), "--login-queue=1".into()],
        ..Default::default()
    };
    let mut app = spawn_app_with(pool, options).await;
    let usernames = create_users_sharing_the_password(&app.pool, "flood", 16).await;

    let answers = sign_in_all_at_once(&app.client, &usernames).await;

    assert_signed_in_or_busy(&answers);
    assert!(refused_as_busy(&answers) > 0, "none of 16 was refused");
    // A refusal for being busy is no failure: each can retry at once.
    for username in &usernames {
        app.login(username).await;
    }
    assert_eq!(
        app.failures("throttled").await + app.failures("wrong_password").await,
        0
    );
}
