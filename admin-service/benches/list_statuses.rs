//! Benchmark of `ListUserStatuses`; the figures and
//! how to read them are in `docs/benchmarks.md`.
//!
//! For each user-base size: a fresh database `presence_bench_<size>` and a
//! fresh Redis key prefix, filled with generated users, login_history and
//! activity; the real admin service started in-process on a loopback port 0;
//! and sequential calls through the generated gRPC client with an admin
//! token, so every figure includes the token check, gRPC over loopback, the
//! PostgreSQL query and the Redis round trips of the service as built.
//!
//! `cargo bench -p admin-service --bench list_statuses -- --help` lists the
//! options. The markdown table goes to stdout, progress to stderr.
//!
//! Why it is shaped so:
//! - Generation is set-based SQL (`generate_series`, one `INSERT ... SELECT`
//!   per table, login_history in time order as an append-only log grows), so
//!   a million users load in about a minute on two cores.
//! - Every time in the data is "seconds before an anchor". Before each case
//!   the anchor moves to now (the last hour of login_history is shifted, the
//!   Redis keys are rewritten), so every case measures the same statuses, not
//!   recent logins that aged past the threshold during the previous case.
//! - Only loopback servers are accepted: this puts real load on them.

use std::str::FromStr;
use std::time::{Duration, Instant};

use clap::Parser;
use presence_core::config::Environment;
use presence_core::token::Role;
use presence_proto::admin::admin_service_client::AdminServiceClient;
use presence_proto::admin::{ListUserStatusesRequest, ListUserStatusesResponse, StatusFilter};
use presence_store::keys::RedisKeys;
use presence_testkit::authorized;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use tonic::transport::Channel;
use uuid::Uuid;

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// HS256 secret of the benchmark's own service and tokens.
const SECRET: &str = "presence-bench-secret-0123456789abcdef";
/// The service's default threshold, which the generated data is placed around.
const THRESHOLD_SECONDS: i64 = 15 * 60;
/// How old the data may get during a case: recent logins are 1-10 minutes
/// before the anchor, so they stay within the threshold.
const ANCHOR_MAX_AGE: Duration = Duration::from_secs(120);

#[derive(Parser, Debug)]
#[command(
    name = "list_statuses",
    about = "Benchmark of AdminService.ListUserStatuses against generated user bases"
)]
struct Options {
    /// User-base sizes to measure, comma-separated.
    #[arg(
        long,
        env = "BENCH_SIZES",
        value_delimiter = ',',
        default_value = "10000,100000,1000000"
    )]
    sizes: Vec<u64>,
    /// PostgreSQL server (its database is used only to create and drop the
    /// `presence_bench_<size>` databases). Loopback only.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    database_url: String,
    /// Redis server (keys under a fresh `bench:<id>:` prefix). Loopback only.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// Timed calls per case.
    #[arg(long, env = "BENCH_SAMPLES", default_value_t = 500)]
    samples: usize,
    /// Fewest timed calls per case, even past the time budget.
    #[arg(long, env = "BENCH_MIN_SAMPLES", default_value_t = 200)]
    min_samples: usize,
    /// Seconds a case may take before it stops at `min_samples`.
    #[arg(long, env = "BENCH_CASE_SECONDS", default_value_t = 90)]
    case_seconds: u64,
    /// Untimed calls before each case.
    #[arg(long, env = "BENCH_WARMUP", default_value_t = 20)]
    warmup: usize,
    /// Requests in flight for the throughput row.
    #[arg(long, env = "BENCH_CONCURRENCY", default_value_t = 4)]
    concurrency: usize,
    /// Keep the databases and Redis keys afterwards (for EXPLAIN ANALYZE).
    #[arg(long)]
    keep: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Parser)]
struct AdminOnly {
    #[command(flatten)]
    config: admin_service::config::AdminConfig,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let options = Options::parse();
    match run(options).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("list_statuses: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(options: Options) -> BenchResult<()> {
    require_loopback("DATABASE_URL", &options.database_url)?;
    require_loopback("REDIS_URL", &options.redis_url)?;
    let server = PgConnectOptions::from_str(&options.database_url)?;
    let machine = machine(&server, &options.redis_url).await?;
    eprintln!("{machine}");
    let mut sizes = Vec::new();
    for &size in &options.sizes {
        let measured = measure_size(&options, &server, size).await?;
        eprintln!("\n{}", table(std::slice::from_ref(&measured)));
        sizes.push(measured);
    }
    println!("{machine}\n");
    println!("{}", table(&sizes));
    println!("{}", loads(&sizes));
    Ok(())
}

/// Refuses any host but the loopback: the benchmark loads what it points at.
fn require_loopback(name: &str, url: &str) -> BenchResult<()> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let host = if let Some(bracketed) = host_port.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    if matches!(host, "127.0.0.1" | "localhost" | "::1") {
        Ok(())
    } else {
        Err(format!("{name} must point at 127.0.0.1 (got host {host:?})").into())
    }
}

/// The machine, in the words docs/benchmarks.md records.
async fn machine(server: &PgConnectOptions, redis_url: &str) -> BenchResult<String> {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("MemTotal"))
                .map(|line| line.trim_start_matches("MemTotal:").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let mut connection = server.connect().await?;
    let postgres: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&mut connection)
        .await?;
    let shared_buffers: String = sqlx::query_scalar("SHOW shared_buffers")
        .fetch_one(&mut connection)
        .await?;
    connection.close().await?;
    let mut redis = redis::Client::open(redis_url)?
        .get_multiplexed_async_connection()
        .await?;
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut redis)
        .await?;
    let redis_version = info
        .lines()
        .find_map(|line| line.strip_prefix("redis_version:"))
        .unwrap_or("unknown")
        .trim()
        .to_owned();
    Ok(format!(
        "machine: {cores} cores ({cpu}), {memory} RAM; PostgreSQL {postgres} \
         (shared_buffers {shared_buffers}); Redis {redis_version}"
    ))
}

// ---------------------------------------------------------------------------
// Generation
// ---------------------------------------------------------------------------

/// A uniform number in [0, 1) derived from a user number and a salt, so the
/// data set is the same on every run (no `random()`, no seed to carry).
const HASH_FUNCTION: &str = "
CREATE FUNCTION bench_u(n bigint, salt int) RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT (hashint8(n * 64 + salt)::float8 + 2147483648) / 4294967296.0 $$";

/// Users `user00000001`..., inserted in random username order (sign-ups do
/// not arrive in alphabetical order, so the heap is not clustered by name).
/// Display names are a first and a last name, each one of 30 (3.3 % of
/// users each), accents included, so searches have common and rare words:
/// « mar » starts Marie, Marc, Martine and Martin (about 13 % of users),
/// « martin » Martin and Martine (6.6 %), and 0.1 % are « Zylberstein ».
const USERS: &str = "
INSERT INTO users (id, username, password_hash, role, display_name, created_at, updated_at)
SELECT gen_random_uuid(), 'user' || lpad(n::text, 8, '0'), '!bench: cannot sign in', 'user',
       (ARRAY['Élodie', 'Marie', 'Marc', 'Martine', 'Thomas', 'Léa', 'Hugo', 'Chloé', 'Lucas',
              'Camille', 'Nathan', 'Inès', 'Louis', 'Sarah', 'Jules', 'Emma', 'Gabriel', 'Manon',
              'Arthur', 'Jade', 'Raphaël', 'Zoé', 'Noé', 'Anaïs', 'Théo', 'Clément', 'Julie',
              'Nicolas', 'Océane', 'Étienne'])[1 + floor(bench_u(n, 50) * 30)::int]
       || ' ' ||
       CASE WHEN bench_u(n, 51) < 0.001 THEN 'Zylberstein' ELSE
       (ARRAY['Durand', 'Martin', 'Bernard', 'Dubois', 'Thomas', 'Robert', 'Richard', 'Petit',
              'Lefèvre', 'Moreau', 'Laurent', 'Simon', 'Michel', 'García', 'Roux', 'Fournier',
              'Girard', 'Bonnet', 'Dupont', 'Lambert', 'Fontaine', 'Rousseau', 'Vincent', 'Müller',
              'Lefebvre', 'Mercier', 'Blanc', 'Guérin', 'Boyer', 'Chevalier'])
           [1 + floor(bench_u(n, 52) * 30)::int] END,
       now() - interval '90 days', now() - interval '90 days'
FROM generate_series(1, $1::bigint) AS n
ORDER BY random()";

/// Who each user is, in per mille of the user base:
/// - A (50): signed in 1-8 h ago, pinging (last ping 0-60 s ago): online by activity;
/// - B (40): signed in 1-10 min ago and pinging: online by activity;
/// - C (40): signed in 1-10 min ago, not pinging: online by login_history;
/// - D (20): signed in 1-10 min ago, then signed out: offline (logout row and marker);
/// - E (10): signed in 1-8 h ago, last ping 16-28 min ago (key still alive): offline;
/// - Z (840): the rest, offline: 95% signed in at some point in the last 30 days.
///
/// So 10% have Redis activity (A, B, E), 10% signed in within the threshold
/// (B, C, D), 13% are online (A, B, C).
const PROFILE: &str = "
CREATE UNLOGGED TABLE bench_profile AS
SELECT u.id, u.username, x.n,
       CASE WHEN y.b < 50 THEN 'A' WHEN y.b < 90 THEN 'B' WHEN y.b < 130 THEN 'C'
            WHEN y.b < 150 THEN 'D' WHEN y.b < 160 THEN 'E' ELSE 'Z' END AS bucket
FROM users u
CROSS JOIN LATERAL (SELECT substr(u.username, 5)::bigint AS n) AS x
CROSS JOIN LATERAL (SELECT floor(bench_u(x.n, 0) * 1000)::int AS b) AS y
WHERE u.username LIKE 'user%'";

/// Sessions in seconds before the anchor: the current one as the profile
/// says (Z: half signed out 5 min to 2 h after signing in), plus 0-2 older
/// ones 1-14 days ago, half of them signed out. Every user with a login has
/// 1-3 of them.
const SESSIONS: &str = "
CREATE UNLOGGED TABLE bench_sessions AS
WITH current_session AS (
    SELECT id, username, n, bucket,
           CASE WHEN bucket IN ('B', 'C', 'D') THEN 60 + bench_u(n, 1) * 540
                WHEN bucket IN ('A', 'E') THEN 3600 + bench_u(n, 1) * 7 * 3600
                WHEN bench_u(n, 2) < 0.95 THEN 3600 + bench_u(n, 1) * 30 * 86400
           END AS login_ago
    FROM bench_profile
)
SELECT id, username, n, 0 AS session, login_ago,
       CASE WHEN bucket = 'D' THEN bench_u(n, 3) * (login_ago - 10)
            WHEN bucket = 'Z' AND bench_u(n, 4) < 0.5
                THEN login_ago - least(login_ago - 1, 300 + bench_u(n, 3) * 7200)
       END AS logout_ago
FROM current_session WHERE login_ago IS NOT NULL
UNION ALL
SELECT c.id, c.username, c.n, s, o.login_ago,
       CASE WHEN bench_u(c.n, 20 + s) < 0.5 THEN o.login_ago - 300 - bench_u(c.n, 30 + s) * 7200 END
FROM current_session c
CROSS JOIN generate_series(1, 2) AS s
CROSS JOIN LATERAL (SELECT 86400 + bench_u(c.n, 10 + s) * 13 * 86400 AS login_ago) AS o
WHERE c.login_ago IS NOT NULL AND s <= floor(bench_u(c.n, 5) * 3)";

/// login_history as the activity service writes it (address, user agent),
/// with a wrong password now and then, in time order.
const HISTORY: &str = "
INSERT INTO login_history (user_id, username, event, failure_reason, client_ip, user_agent, occurred_at)
SELECT id, username, event, reason, '10.0.0.0'::inet + (n % 16777216),
       'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36',
       to_timestamp($1::float8 - ago)
FROM (
    SELECT id, username, n, 'login_success' AS event, NULL AS reason, login_ago AS ago
    FROM bench_sessions
    UNION ALL
    SELECT id, username, n, 'logout', NULL, logout_ago FROM bench_sessions
    WHERE logout_ago IS NOT NULL
    UNION ALL
    SELECT id, username, n, 'login_failure', 'wrong_password', 86400 + bench_u(n, 40) * 13 * 86400
    FROM bench_profile WHERE bench_u(n, 41) < 0.03
) AS e
ORDER BY ago DESC";

/// What Redis holds, in seconds before the anchor: pings of A, B and E, the
/// logins not followed by a logout (the activity service puts a login in the
/// presence index), and the logout markers still alive (they, like the
/// index entries, live twice the threshold).
const REDIS_FACTS: &str = "
SELECT p.id,
       CASE WHEN p.bucket IN ('A', 'B') THEN bench_u(p.n, 6) * 60
            WHEN p.bucket = 'E' THEN 960 + bench_u(p.n, 6) * 720 END AS activity_ago,
       CASE WHEN s.logout_ago IS NULL AND s.login_ago < $1 THEN s.login_ago END AS login_ago,
       CASE WHEN s.logout_ago < $1 THEN s.logout_ago END AS logout_ago
FROM bench_profile p
LEFT JOIN bench_sessions s ON s.id = p.id AND s.session = 0
WHERE p.bucket IN ('A', 'B', 'E') OR s.logout_ago < $1
   OR (s.logout_ago IS NULL AND s.login_ago < $1)";

/// A row of `REDIS_FACTS`.
#[derive(sqlx::FromRow)]
struct RedisFactRow {
    id: Uuid,
    activity_ago: Option<f64>,
    login_ago: Option<f64>,
    logout_ago: Option<f64>,
}

/// A user's activity key, login not followed by a logout, and logout
/// marker, as seconds before the anchor.
struct RedisFact {
    user: Uuid,
    activity_ago: Option<i64>,
    login_ago: Option<i64>,
    logout_ago: Option<i64>,
}

/// One generated user base: its database, its Redis facts, its anchor.
struct Dataset {
    size: u64,
    database: String,
    connection: PgConnection,
    redis: redis::aio::MultiplexedConnection,
    keys: RedisKeys,
    facts: Vec<RedisFact>,
    anchor: i64,
    expected_online: u64,
    load: Load,
}

/// What generating a size took and produced.
#[derive(Clone, Debug, Default)]
struct Load {
    users_seconds: f64,
    history_seconds: f64,
    redis_seconds: f64,
    vacuum_seconds: f64,
    history_rows: i64,
    redis_keys: usize,
    database_size: String,
    /// With no request in flight: PostgreSQL backends of the benchmark's
    /// database at work (mean of samples), and the CPU of this process (the
    /// service's background work), as a share of one core.
    idle_backends: f64,
    idle_cpu: f64,
    /// /proc/loadavg when the cases start: anything else loading the machine.
    load_average: String,
}

/// The first `count` load averages (1, 5, 15 minutes) from /proc/loadavg.
fn load_average(count: usize) -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(count)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// User and system CPU time of this process so far (Linux clock ticks of 1/100 s).
fn process_cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let user: f64 = fields.get(11)?.parse().ok()?;
            let system: f64 = fields.get(12)?.parse().ok()?;
            Some((user + system) / 100.0)
        })
        .unwrap_or_default()
}

fn seconds_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}

impl Dataset {
    async fn generate(
        server: &PgConnectOptions,
        redis_url: &str,
        size: u64,
    ) -> BenchResult<Dataset> {
        let database = format!("presence_bench_{size}");
        let mut admin = server.connect().await?;
        // Two statements: neither may run inside a transaction block.
        for statement in [
            format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"),
            format!("CREATE DATABASE {database}"),
        ] {
            sqlx::raw_sql(&statement).execute(&mut admin).await?;
        }
        admin.close().await?;
        let mut connection = server.clone().database(&database).connect().await?;
        presence_store::db::MIGRATOR.run(&mut connection).await?;
        // Session settings only: faster loading, nothing changed on the server.
        sqlx::raw_sql("SET synchronous_commit = off; SET maintenance_work_mem = '512MB'")
            .execute(&mut connection)
            .await?;
        let mut load = Load::default();
        let anchor = chrono::Utc::now().timestamp();

        let start = Instant::now();
        sqlx::raw_sql(HASH_FUNCTION)
            .execute(&mut connection)
            .await?;
        sqlx::query(USERS)
            .bind(size as i64)
            .execute(&mut connection)
            .await?;
        sqlx::raw_sql(PROFILE).execute(&mut connection).await?;
        load.users_seconds = seconds_since(start);
        eprintln!("  {size} users in {:.1} s", load.users_seconds);

        let start = Instant::now();
        sqlx::raw_sql(SESSIONS).execute(&mut connection).await?;
        let inserted = sqlx::query(HISTORY)
            .bind(anchor as f64)
            .execute(&mut connection)
            .await?;
        load.history_rows = inserted.rows_affected() as i64;
        load.history_seconds = seconds_since(start);
        eprintln!(
            "  {} login_history rows in {:.1} s",
            load.history_rows, load.history_seconds
        );

        let facts: Vec<RedisFactRow> = sqlx::query_as(REDIS_FACTS)
            .bind((2 * THRESHOLD_SECONDS) as f64)
            .fetch_all(&mut connection)
            .await?;
        let seconds = |ago: Option<f64>| ago.map(|ago| ago.ceil() as i64);
        let facts = facts
            .into_iter()
            .map(|row| RedisFact {
                user: row.id,
                activity_ago: seconds(row.activity_ago),
                login_ago: seconds(row.login_ago),
                logout_ago: seconds(row.logout_ago),
            })
            .collect();
        let expected_online: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM bench_profile WHERE bucket IN ('A', 'B', 'C')",
        )
        .fetch_one(&mut connection)
        .await?;

        let start = Instant::now();
        sqlx::raw_sql("VACUUM (ANALYZE)")
            .execute(&mut connection)
            .await?;
        load.vacuum_seconds = seconds_since(start);
        load.database_size =
            sqlx::query_scalar("SELECT pg_size_pretty(pg_database_size(current_database()))")
                .fetch_one(&mut connection)
                .await?;

        eprintln!(
            "  VACUUM ANALYZE in {:.1} s; database {}",
            load.vacuum_seconds, load.database_size
        );
        let redis = redis::Client::open(redis_url)?
            .get_multiplexed_async_connection()
            .await?;
        let keys = RedisKeys::new(format!("bench:{}:", Uuid::new_v4().simple()))?;
        Ok(Dataset {
            size,
            database,
            connection,
            redis,
            keys,
            facts,
            anchor,
            expected_online: expected_online as u64,
            load,
        })
    }

    /// Writes the activity keys, the presence index and the logout markers
    /// relative to the anchor, exactly as the activity service's ping and
    /// logout scripts leave them (keys live twice the threshold from the
    /// event). Pipelined; returns the number of keys written.
    async fn write_redis(&mut self) -> BenchResult<usize> {
        let mut written = 0;
        for chunk in self.facts.chunks(2000) {
            let mut pipeline = redis::pipe();
            for fact in chunk {
                // A key whose life would already be over is not written.
                let alive = |ago: &i64| *ago < 2 * THRESHOLD_SECONDS;
                // The key as written `ago` seconds before the anchor, with
                // the rest of its life.
                let mut set_aged = |key: String, ago: i64| {
                    pipeline
                        .cmd("SET")
                        .arg(key)
                        .arg(self.anchor - ago)
                        .arg("EX")
                        .arg(2 * THRESHOLD_SECONDS - ago)
                        .ignore();
                    written += 1;
                };
                if let Some(ago) = fact.activity_ago.filter(alive) {
                    set_aged(self.keys.last_activity(fact.user), ago);
                }
                if let Some(ago) = fact.logout_ago.filter(alive) {
                    set_aged(self.keys.last_logout(fact.user), ago);
                }
                // The index entry: the later of the ping and the login.
                let entry_ago = match (fact.activity_ago, fact.login_ago) {
                    (Some(ping), Some(login)) => Some(ping.min(login)),
                    (ping, login) => ping.or(login),
                };
                if let Some(ago) = entry_ago.filter(alive) {
                    pipeline
                        .cmd("ZADD")
                        .arg(self.keys.presence_index_for(fact.user))
                        .arg(self.anchor - ago)
                        .arg(fact.user.to_string())
                        .ignore();
                }
            }
            pipeline.query_async::<()>(&mut self.redis).await?;
        }
        Ok(written + 1)
    }

    fn anchor_age(&self) -> Duration {
        let age = chrono::Utc::now().timestamp() - self.anchor;
        Duration::from_secs(u64::try_from(age).unwrap_or_default())
    }

    /// Moves the anchor to now: shifts the last hour of login_history and
    /// rewrites Redis, then lets VACUUM ANALYZE bring the table back to the
    /// state autovacuum keeps it in.
    async fn reanchor(&mut self) -> BenchResult<()> {
        let now = chrono::Utc::now().timestamp();
        let shift = now - self.anchor;
        if shift > 0 {
            sqlx::query(
                "UPDATE login_history SET occurred_at = occurred_at + make_interval(secs => $1)
                 WHERE occurred_at >= to_timestamp($2)",
            )
            .bind(shift as f64)
            .bind((self.anchor - 3600) as f64)
            .execute(&mut self.connection)
            .await?;
            sqlx::raw_sql("VACUUM (ANALYZE) login_history")
                .execute(&mut self.connection)
                .await?;
        }
        self.anchor = now;
        self.write_redis().await?;
        Ok(())
    }

    /// What the service costs with no request in flight (its status hub
    /// works in the background): settles, then samples for `IDLE_SECONDS`.
    async fn measure_idle(&mut self) -> BenchResult<()> {
        const IDLE_SECONDS: u64 = 10;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let cpu_before = process_cpu_seconds();
        let start = Instant::now();
        let mut samples = 0u32;
        let mut active = 0i64;
        while start.elapsed() < Duration::from_secs(IDLE_SECONDS) {
            let busy: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND state = 'active'
                   AND pid <> pg_backend_pid()",
            )
            .fetch_one(&mut self.connection)
            .await?;
            active += busy;
            samples += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.load.idle_cpu = (process_cpu_seconds() - cpu_before) / seconds_since(start);
        self.load.idle_backends = active as f64 / f64::from(samples.max(1));
        self.load.load_average = load_average(3);
        eprintln!(
            "  idle: {:.2} PostgreSQL backends busy, service process {:.0}% of a core; load average {}",
            self.load.idle_backends,
            self.load.idle_cpu * 100.0,
            self.load.load_average
        );
        Ok(())
    }

    /// The username at the middle of the listing order.
    async fn middle_username(&mut self) -> BenchResult<String> {
        Ok(sqlx::query_scalar(
            "SELECT username FROM users WHERE NOT disabled ORDER BY username OFFSET $1 LIMIT 1",
        )
        .bind((self.size / 2) as i64)
        .fetch_one(&mut self.connection)
        .await?)
    }

    /// The admin who calls the service: a users row and a token for it.
    async fn admin_token(
        &mut self,
        config: &admin_service::config::AdminConfig,
    ) -> BenchResult<String> {
        let id = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO users (id, username, password_hash, role, display_name)
             VALUES ($1, 'bench-admin', '!bench: cannot sign in', 'admin', 'Bench Admin')",
        )
        .bind(id)
        .execute(&mut self.connection)
        .await?;
        let issuer = config.jwt.issuer(Environment::Development, 4 * 3600)?;
        Ok(issuer
            .issue(id, Role::Admin, chrono::Utc::now().timestamp())?
            .token)
    }

    /// Drops the database and deletes the prefix's keys.
    async fn remove(mut self, server: &PgConnectOptions) -> BenchResult<()> {
        let pattern = format!("{}*", self.keys.prefix());
        let mut cursor: u64 = 0;
        loop {
            let (next, found): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(10_000)
                .query_async(&mut self.redis)
                .await?;
            if !found.is_empty() {
                redis::cmd("UNLINK")
                    .arg(&found)
                    .query_async::<()>(&mut self.redis)
                    .await?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        self.connection.close().await?;
        let mut admin = server.connect().await?;
        sqlx::raw_sql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.database
        ))
        .execute(&mut admin)
        .await?;
        admin.close().await?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Measurement
// ---------------------------------------------------------------------------

/// One kind of call, repeated.
struct Case {
    name: &'static str,
    filter: StatusFilter,
    page_size: u32,
    page_token: String,
    /// The search (empty: every user).
    query: &'static str,
}

/// The timings of one case.
#[derive(Clone, Debug)]
struct Measured {
    name: String,
    latencies: Vec<Duration>,
    elapsed: Duration,
    degraded: usize,
    /// Lowest and highest online_count of the answers that were not degraded.
    online_range: Option<(u64, u64)>,
    total_count: u64,
    /// The 1-minute load average when the case ended: anything else running
    /// on the machine shows here (this benchmark alone is about 2 on 2 cores).
    load_after: String,
}

impl Measured {
    fn record(&mut self, response: &ListUserStatusesResponse) {
        self.total_count = response.total_count;
        if response.degraded {
            self.degraded += 1;
        } else {
            let online = response.online_count;
            self.online_range = Some(match self.online_range {
                Some((low, high)) => (low.min(online), high.max(online)),
                None => (online, online),
            });
        }
    }

    fn percentile(&self, fraction: f64) -> f64 {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let rank = ((fraction * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        millis(sorted[rank - 1])
    }

    fn mean(&self) -> f64 {
        millis(self.latencies.iter().sum::<Duration>()) / self.latencies.len() as f64
    }

    fn throughput(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// The figures of one user-base size.
struct SizeResult {
    size: u64,
    expected_online: u64,
    load: Load,
    cases: Vec<Measured>,
    problems: Vec<String>,
}

/// One call of `case`'s request.
async fn call_case(
    client: &mut AdminServiceClient<Channel>,
    token: &str,
    case: &Case,
) -> BenchResult<ListUserStatusesResponse> {
    call(
        client,
        token,
        case.filter,
        case.page_size,
        &case.page_token,
        case.query,
    )
    .await
}

async fn call(
    client: &mut AdminServiceClient<Channel>,
    token: &str,
    filter: StatusFilter,
    page_size: u32,
    page_token: &str,
    query: &str,
) -> BenchResult<ListUserStatusesResponse> {
    let request = ListUserStatusesRequest {
        page_size,
        page_token: page_token.to_owned(),
        filter: filter as i32,
        query: query.to_owned(),
    };
    Ok(client
        .list_user_statuses(authorized(request, token))
        .await?
        .into_inner())
}

/// Warms up, then times calls one at a time until `samples` are taken or the
/// time budget is spent (but never fewer than `min_samples`). Between two
/// calls (untimed) the data is re-anchored when it has aged `ANCHOR_MAX_AGE`.
async fn measure_case(
    options: &Options,
    dataset: &mut Dataset,
    client: &mut AdminServiceClient<Channel>,
    token: &str,
    case: &Case,
) -> BenchResult<Measured> {
    for _ in 0..options.warmup {
        call_case(client, token, case).await?;
    }
    let budget = Duration::from_secs(options.case_seconds);
    let mut measured = Measured {
        name: case.name.to_owned(),
        latencies: Vec::with_capacity(options.samples),
        elapsed: Duration::ZERO,
        degraded: 0,
        online_range: None,
        total_count: 0,
        load_after: String::new(),
    };
    let start = Instant::now();
    while measured.latencies.len() < options.samples
        && (measured.latencies.len() < options.min_samples || start.elapsed() < budget)
    {
        let sent = Instant::now();
        let response = call_case(client, token, case).await?;
        measured.latencies.push(sent.elapsed());
        measured.record(&response);
        // Keep recent logins inside the threshold however long the case runs.
        if dataset.anchor_age() > ANCHOR_MAX_AGE {
            dataset.reanchor().await?;
        }
    }
    measured.elapsed = start.elapsed();
    measured.load_after = load_average(1);
    Ok(measured)
}

/// `concurrency` callers on one HTTP/2 connection, each one call at a time,
/// for as many calls in total as a sequential case takes.
async fn measure_throughput(
    options: &Options,
    client: &AdminServiceClient<Channel>,
    token: &str,
    calls: usize,
) -> BenchResult<Measured> {
    let per_caller = calls.div_ceil(options.concurrency);
    let start = Instant::now();
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..options.concurrency {
        let mut client = client.clone();
        let token = token.to_owned();
        callers.spawn(async move {
            let mut responses = Vec::with_capacity(per_caller);
            for _ in 0..per_caller {
                let sent = Instant::now();
                let response = call(&mut client, &token, StatusFilter::All, 100, "", "").await?;
                responses.push((sent.elapsed(), response));
            }
            BenchResult::Ok(responses)
        });
    }
    let mut measured = Measured {
        name: format!("(f) page of 100, ALL, {} in flight", options.concurrency),
        latencies: Vec::new(),
        elapsed: Duration::ZERO,
        degraded: 0,
        online_range: None,
        total_count: 0,
        load_after: String::new(),
    };
    while let Some(joined) = callers.join_next().await {
        for (latency, response) in joined?? {
            measured.latencies.push(latency);
            measured.record(&response);
        }
    }
    measured.elapsed = start.elapsed();
    measured.load_after = load_average(1);
    Ok(measured)
}

async fn connect(address: std::net::SocketAddr) -> BenchResult<AdminServiceClient<Channel>> {
    let channel = Channel::from_shared(format!("http://{address}"))?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await?;
    Ok(AdminServiceClient::new(channel))
}

async fn measure_size(
    options: &Options,
    server: &PgConnectOptions,
    size: u64,
) -> BenchResult<SizeResult> {
    eprintln!("\n== {size} users");
    let mut dataset = Dataset::generate(server, &options.redis_url, size).await?;
    // Whatever happens from here, the database and the keys are removed.
    let outcome = serve_and_measure(options, server, &mut dataset).await;
    let load = dataset.load.clone();
    let expected_online = dataset.expected_online;
    if options.keep {
        eprintln!(
            "  kept: database {}, Redis prefix {} (anchor {})",
            dataset.database,
            dataset.keys.prefix(),
            dataset.anchor
        );
    } else {
        dataset.remove(server).await?;
    }
    let (cases, problems) = outcome?;
    Ok(SizeResult {
        size,
        expected_online,
        load,
        cases,
        problems,
    })
}

/// Writes Redis, starts the service on the dataset, runs every case, stops it.
async fn serve_and_measure(
    options: &Options,
    server: &PgConnectOptions,
    dataset: &mut Dataset,
) -> BenchResult<(Vec<Measured>, Vec<String>)> {
    let start = Instant::now();
    dataset.load.redis_keys = dataset.write_redis().await?;
    dataset.load.redis_seconds = seconds_since(start);
    eprintln!(
        "  {} Redis keys in {:.1} s",
        dataset.load.redis_keys, dataset.load.redis_seconds
    );
    let database_url = server
        .clone()
        .database(&dataset.database)
        .to_url_lossy()
        .to_string();
    let config = AdminOnly::parse_from([
        "admin-service".to_owned(),
        "--listen-addr=127.0.0.1:0".into(),
        format!("--database-url={database_url}"),
        format!("--redis-url={}", options.redis_url),
        format!("--redis-key-prefix={}", dataset.keys.prefix()),
        format!("--jwt-secret={SECRET}"),
    ])
    .config;
    let token = dataset.admin_token(&config).await?;
    let pool = presence_store::db::connect_lazy(&config.database)?;
    let application =
        admin_service::startup::Application::build_with_pool(config.clone(), pool.clone()).await?;
    let address = application.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(application.run_until(async {
        let _ = stopped.await;
    }));
    let outcome = match connect(address).await {
        Ok(client) => run_cases(options, &config, dataset, client, &token).await,
        Err(error) => Err(error),
    };
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), serving).await;
    pool.close().await;
    outcome
}

async fn run_cases(
    options: &Options,
    config: &admin_service::config::AdminConfig,
    dataset: &mut Dataset,
    mut client: AdminServiceClient<Channel>,
    token: &str,
) -> BenchResult<(Vec<Measured>, Vec<String>)> {
    let mut problems = Vec::new();
    let deep_token = deep_page_token(config, dataset, &mut client, token, &mut problems).await?;
    dataset.measure_idle().await?;
    let cases = [
        Case {
            name: "(a) page of 100, ALL, first page",
            filter: StatusFilter::All,
            page_size: 100,
            page_token: String::new(),
            query: "",
        },
        Case {
            name: "(b) page of 100, ALL, middle of the list",
            filter: StatusFilter::All,
            page_size: 100,
            page_token: deep_token,
            query: "",
        },
        Case {
            name: "(c) page of 100, ONLINE",
            filter: StatusFilter::Online,
            page_size: 100,
            page_token: String::new(),
            query: "",
        },
        Case {
            name: "(d) page of 100, OFFLINE",
            filter: StatusFilter::Offline,
            page_size: 100,
            page_token: String::new(),
            query: "",
        },
        Case {
            name: "(e) page_size 1, ALL (counts proxy)",
            filter: StatusFilter::All,
            page_size: 1,
            page_token: String::new(),
            query: "",
        },
        Case {
            name: "(g) page of 100, 3-letter query « mar » (13 % match)",
            filter: StatusFilter::All,
            page_size: 100,
            page_token: String::new(),
            query: "mar",
        },
        Case {
            name: "(g2) page of 100, 3-letter query « zyl » (0.1 % match)",
            filter: StatusFilter::All,
            page_size: 100,
            page_token: String::new(),
            query: "zyl",
        },
        Case {
            name: "(h) page of 100, 6-letter query « martin » (6.6 % match)",
            filter: StatusFilter::All,
            page_size: 100,
            page_token: String::new(),
            query: "martin",
        },
        Case {
            name: "(i) page of 100, ONLINE, 3-letter query « mar »",
            filter: StatusFilter::Online,
            page_size: 100,
            page_token: String::new(),
            query: "mar",
        },
    ];
    let mut measured = Vec::new();
    for case in &cases {
        dataset.reanchor().await?;
        check_answer(dataset, &mut client, token, case, &mut problems).await?;
        let result = measure_case(options, dataset, &mut client, token, case).await?;
        eprintln!(
            "  {}: {} calls, p50 {:.2} ms, p99 {:.2} ms",
            result.name,
            result.latencies.len(),
            result.percentile(0.50),
            result.percentile(0.99)
        );
        measured.push(result);
    }
    dataset.reanchor().await?;
    let calls = measured
        .first()
        .map_or(options.samples, |m| m.latencies.len());
    let throughput = measure_throughput(options, &client, token, calls).await?;
    eprintln!(
        "  {}: {:.1} calls/s",
        throughput.name,
        throughput.throughput()
    );
    measured.push(throughput);
    Ok((measured, problems))
}

/// A token for the page after the middle username. A walk of half a million
/// users would take minutes at 1M, so the token is made the way the service
/// makes it; a short walk from the start checks that both agree.
async fn deep_page_token(
    config: &admin_service::config::AdminConfig,
    dataset: &mut Dataset,
    client: &mut AdminServiceClient<Channel>,
    token: &str,
    problems: &mut Vec<String>,
) -> BenchResult<String> {
    let key = config.page_token_key()?;
    let tokens = admin_service::page_token::PageTokens::new(&key);
    let filter = StatusFilter::All as i32;
    let mut page_token = String::new();
    for _ in 0..3 {
        let page = call(client, token, StatusFilter::All, 100, &page_token, "").await?;
        let last = page
            .statuses
            .last()
            .map(|s| s.username.clone())
            .unwrap_or_default();
        if tokens.issue(filter, "", &last) != page.next_page_token {
            problems.push("page tokens made here differ from the service's".into());
        }
        page_token = page.next_page_token;
    }
    let middle = dataset.middle_username().await?;
    let deep = tokens.issue(filter, "", &middle);
    let page = call(client, token, StatusFilter::All, 100, &deep, "").await?;
    if page.statuses.first().is_none_or(|s| s.username <= middle) || page.statuses.len() != 100 {
        problems.push(format!("the page after {middle} is not the next 100 users"));
    }
    Ok(deep)
}

/// Checks one answer against the generated data: the total, the online count
/// (13% of users by construction) and the filter.
async fn check_answer(
    dataset: &Dataset,
    client: &mut AdminServiceClient<Channel>,
    token: &str,
    case: &Case,
    problems: &mut Vec<String>,
) -> BenchResult<()> {
    let page = call_case(client, token, case).await?;
    let mut problem = |text: String| {
        eprintln!("  PROBLEM: {text}");
        problems.push(text);
    };
    if page.degraded {
        problem(format!("{}: degraded answer", case.name));
    }
    if page.total_count != dataset.size + 1 {
        problem(format!(
            "{}: total_count {} but {} users exist",
            case.name,
            page.total_count,
            dataset.size + 1
        ));
    }
    if page.online_count != dataset.expected_online {
        problem(format!(
            "{}: online_count {} but {} users are online by construction",
            case.name, page.online_count, dataset.expected_online
        ));
    }
    let wanted = match case.filter {
        StatusFilter::Online => Some(true),
        StatusFilter::Offline => Some(false),
        _ => None,
    };
    if let Some(online) = wanted
        && page.statuses.iter().any(|status| status.online != online)
    {
        problem(format!("{}: a status does not match the filter", case.name));
    }
    if !case.query.is_empty()
        && page.statuses.iter().any(|status| {
            let names = format!("{} {}", status.username, status.display_name).to_lowercase();
            !names
                .split(|c: char| !c.is_alphanumeric())
                .any(|word| word.starts_with(case.query))
        })
    {
        problem(format!("{}: a user does not match the query", case.name));
    }
    // A rare word may match fewer users than a page holds: then it is the last page.
    let last_page = page.next_page_token.is_empty() && !case.query.is_empty();
    if page.statuses.len() != case.page_size as usize && !last_page {
        problem(format!(
            "{}: {} statuses for page_size {}",
            case.name,
            page.statuses.len(),
            case.page_size
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------

fn table(sizes: &[SizeResult]) -> String {
    let mut out = String::from(
        "| users | case | calls | p50 ms | p99 ms | max ms | mean ms | calls/s | degraded | load 1m |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for size in sizes {
        for case in &size.cases {
            out.push_str(&format!(
                "| {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} | {} | {} |\n",
                size.size,
                case.name,
                case.latencies.len(),
                case.percentile(0.50),
                case.percentile(0.99),
                case.percentile(1.0),
                case.mean(),
                case.throughput(),
                case.degraded,
                case.load_after
            ));
        }
    }
    out
}

fn loads(sizes: &[SizeResult]) -> String {
    let mut out = String::from(
        "\n| users | users + profile s | login_history rows | login_history s | VACUUM ANALYZE s | Redis keys | Redis s | database | online: by construction / answers not degraded | idle: PG backends busy | idle: service CPU | load average | problems |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|\n",
    );
    for size in sizes {
        let ranges = size.cases.iter().filter_map(|case| case.online_range);
        let low = ranges.clone().map(|(low, _)| low).min();
        let high = ranges.map(|(_, high)| high).max();
        let counts = match (low, high) {
            (Some(low), Some(high)) if low == high => format!("{low}"),
            (Some(low), Some(high)) => format!("{low}-{high}"),
            _ => "none".to_owned(),
        };
        let problems = if size.problems.is_empty() {
            "none".to_owned()
        } else {
            size.problems.join("; ")
        };
        out.push_str(&format!(
            "| {} | {:.1} | {} | {:.1} | {:.1} | {} | {:.1} | {} | {} / {} | {:.2} | {:.0}% | {} | {} |\n",
            size.size,
            size.load.users_seconds,
            size.load.history_rows,
            size.load.history_seconds,
            size.load.vacuum_seconds,
            size.load.redis_keys,
            size.load.redis_seconds,
            size.load.database_size,
            size.expected_online,
            counts,
            size.load.idle_backends,
            size.load.idle_cpu * 100.0,
            size.load.load_average,
            problems
        ));
    }
    out
}
