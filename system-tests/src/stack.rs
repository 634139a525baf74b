//! The whole of presence as the tests run it: PostgreSQL (a database of its
//! own on the shared server, or a throwaway cluster the test may stop),
//! a throwaway Redis (optionally reached through a proxy), one or more
//! replicas of each service behind a proxy standing for its Kubernetes
//! Service, and the gateway, which reaches the services only through those
//! proxies. Users are seeded straight into PostgreSQL; load users ping with
//! tokens the kit signs with the stack's own key, as Login would sign them
//! (a Login costs an argon2id check: hundreds of them would cost a test more
//! than its faults); the tests' own sign-ins go through the gateway.
//!
//! The activity replicas may instead be found by name, as pods behind a
//! headless Service are (`Options::activity_by_name`): each listens on a
//! loopback address of its own, and the gateway, run in a private mount
//! namespace whose /etc/hosts is the stack's file, resolves `ACTIVITY_PODS`
//! to those the test lists there.
//!
//! Dropping a stack kills its processes and removes its database and
//! directory; if the test is failing, it prints the tail of every log first
//! and keeps the directory.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey};
use presence_core::token::{Role, TokenIssuer};
use presence_proto::activity::{LoginRequest, LoginResponse, LogoutRequest, LogoutResponse};
use presence_proto::admin::{
    ListUserStatusesRequest, ListUserStatusesResponse, StatusFilter, UserStatus,
    WatchUserStatusesRequest,
};
use presence_store::keys::RedisKeys;
use presence_testkit::{ThrowawayRedis, free_port};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use uuid::Uuid;

use crate::grpc_web::{CallError, WebClient, WebStream};
use crate::load::{LoadUser, PingLoad};
use crate::postgres::ThrowawayPostgres;
use crate::process::Process;
use crate::proxy::Proxy;

/// The stack's HS256 key (every service and the kit sign and verify with
/// it) and every seeded account's password: the test kit's.
pub use presence_testkit::{PASSWORD, SECRET};
/// The seeded admin, signed in through the gateway when the stack starts.
pub const ADMIN: &str = "admin";
/// Deadline of the tests' own unary calls: generous, so only a hang reaches it.
pub const CALL_DEADLINE: Duration = Duration::from_secs(10);
/// How long a service given SIGTERM may take to exit.
pub const EXIT_WITHIN: Duration = Duration::from_secs(30);

const LOGIN: &str = "/presence.activity.v1.ActivityService/Login";
const LOGOUT: &str = "/presence.activity.v1.ActivityService/Logout";
const LIST: &str = "/presence.admin.v1.AdminService/ListUserStatuses";
const WATCH: &str = "/presence.admin.v1.AdminService/WatchUserStatuses";

/// The name the gateway resolves to the activity replicas, with `activity_by_name`.
pub const ACTIVITY_PODS: &str = "activity-pods.presence.test";
/// The size of every version of the stack's hosts file (padded with a comment).
const HOSTS_BYTES: usize = 1024;

/// Environment variables for one service.
pub type Env = Vec<(String, String)>;

/// What a test needs of its stack.
#[derive(Debug)]
pub struct Options {
    pub activity_replicas: usize,
    pub admin_replicas: usize,
    /// A cluster of its own (which the test may stop) instead of a database
    /// on the shared server.
    pub throwaway_postgres: bool,
    /// The activity service reaches Redis through `Stack::redis_proxy`.
    pub redis_through_proxy: bool,
    /// Users seeded for the ping load.
    pub load_users: usize,
    /// Added to (or overriding) each activity replica's environment.
    pub activity_env: Env,
    pub admin_env: Env,
    pub gateway_env: Env,
    /// The activity replicas listen on 127.0.0.2, 127.0.0.3, ... at one
    /// port, and the gateway resolves `ACTIVITY_PODS` to them through the
    /// stack's hosts file (`Stack::resolve_activity_to`) instead of going
    /// through `activity_service`. Needs root: the gateway runs in a private
    /// mount namespace (`unshare --mount`) with that file on its /etc/hosts.
    pub activity_by_name: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            activity_replicas: 1,
            admin_replicas: 1,
            throwaway_postgres: false,
            redis_through_proxy: false,
            load_users: 200,
            activity_env: Env::new(),
            admin_env: Env::new(),
            gateway_env: Env::new(),
            activity_by_name: false,
        }
    }
}

/// `(name, value)` pairs as an environment.
pub fn env(pairs: &[(&str, &str)]) -> Env {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

#[derive(Debug)]
pub struct Stack {
    /// How its processes are started.
    setup: Setup,
    pub postgres: Option<ThrowawayPostgres>,
    pub pool: PgPool,
    pub redis: ThrowawayRedis,
    pub redis_port: u16,
    pub redis_proxy: Option<Proxy>,
    pub keys: RedisKeys,
    pub activity: Vec<Process>,
    /// The activity service's Service address, as the gateway knows it
    /// (unless it resolves the replicas by name).
    pub activity_service: Proxy,
    pub admin: Vec<Process>,
    pub admin_service: Proxy,
    pub gateway: Process,
    /// The users of the ping load, with their tokens.
    pub users: Vec<LoadUser>,
    pub admin_token: String,
    issuer: TokenIssuer,
}

/// A service that runs as replicas behind a Service (the gateway is one process).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    Activity,
    Admin,
}

/// What every process of a stack is started with.
#[derive(Debug)]
struct Setup {
    /// Logs, the throwaway cluster, the gateway's (empty) web directory.
    dir: PathBuf,
    server_url: String,
    database: String,
    /// Redis as the services reach it (directly or through the proxy).
    redis_url: String,
    prefix: String,
    options: Options,
    /// How many replicas were started, for their names (`activity-3`).
    started: usize,
    /// The port every activity replica found by name listens on.
    activity_port: u16,
    /// Activity replicas started on their own address so far.
    activity_hosts: u8,
    /// The gateway's /etc/hosts, with `activity_by_name`.
    hosts: PathBuf,
}

impl Stack {
    pub async fn start(options: Options) -> Self {
        let dir = std::env::temp_dir().join(format!("presence-system-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(dir.join("web")).expect("a directory for the test");
        let postgres = if options.throwaway_postgres {
            Some(ThrowawayPostgres::start(&dir).await)
        } else {
            None
        };
        let server_url = postgres
            .as_ref()
            .map_or_else(shared_server_url, ThrowawayPostgres::server_url);
        let database = format!("presence_system_{}", Uuid::new_v4().simple());
        let database_url = format!("{server_url}/{database}");
        let redis = ThrowawayRedis::start().await;
        let redis_port = redis
            .url
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .expect("the throwaway Redis's URL ends with its port");
        let redis_proxy = if options.redis_through_proxy {
            Some(Proxy::start(vec![loopback(redis_port)]).await)
        } else {
            None
        };
        let redis_url = match &redis_proxy {
            Some(proxy) => format!("redis://{}", proxy.address),
            None => redis.url.clone(),
        };
        cli(
            &["migrate"],
            &[("DATABASE_URL", database_url.as_str())],
            None,
        )
        .await;
        cli(
            &["user", "upsert", "--username", ADMIN, "--role", "admin"],
            &[("DATABASE_URL", database_url.as_str())],
            Some(PASSWORD),
        )
        .await;
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect(&database_url)
            .await
            .expect("the test's database");
        let prefix = format!("system:{}:", Uuid::new_v4().simple());
        let keys = RedisKeys::new(prefix.clone()).expect("a prefix without braces");
        let hosts = dir.join("hosts");
        let mut setup = Setup {
            dir,
            server_url,
            database,
            redis_url,
            prefix,
            activity_port: free_port(),
            activity_hosts: 0,
            hosts,
            options,
            started: 0,
        };
        let mut activity = Vec::new();
        for _ in 0..setup.options.activity_replicas {
            activity.push(setup.spawn_activity().await);
        }
        let mut admin = Vec::new();
        for _ in 0..setup.options.admin_replicas {
            admin.push(setup.spawn_admin().await);
        }
        let addresses = |replicas: &[Process]| -> Vec<SocketAddr> {
            replicas.iter().map(|r| r.address).collect()
        };
        if setup.options.activity_by_name {
            write_hosts(&setup.hosts, &addresses(&activity));
            assert_private_hosts_file(&setup.hosts);
        }
        let activity_service = Proxy::start(addresses(&activity)).await;
        let admin_service = Proxy::start(addresses(&admin)).await;
        let gateway = setup
            .spawn_gateway(activity_service.address, admin_service.address)
            .await;
        let mut stack = Self {
            setup,
            postgres,
            pool,
            redis,
            redis_port,
            redis_proxy,
            keys,
            activity,
            activity_service,
            admin,
            admin_service,
            gateway,
            users: Vec::new(),
            admin_token: String::new(),
            issuer: TokenIssuer::new(
                Algorithm::HS256,
                EncodingKey::from_secret(SECRET.as_bytes()),
                "presence",
                3600,
            ),
        };
        stack.users = stack.seed_load_users().await;
        stack.admin_token = stack
            .login(ADMIN)
            .await
            .expect("the admin signs in through the gateway")
            .access_token;
        stack
    }

    /// The gateway's address, where browsers connect.
    pub fn gateway_address(&self) -> SocketAddr {
        self.gateway.address
    }

    /// Starts the ping load of every load user, each pinging every `period`.
    pub fn start_load(&self, period: Duration) -> PingLoad {
        PingLoad::start(self.gateway_address(), self.users.clone(), period)
    }

    /// The replicas of `tier` and the Service in front of them.
    fn tier(&mut self, tier: Tier) -> (&mut Vec<Process>, &Proxy) {
        match tier {
            Tier::Activity => (&mut self.activity, &self.activity_service),
            Tier::Admin => (&mut self.admin, &self.admin_service),
        }
    }

    /// Takes replica `index` of `tier` out of the Service and sends it SIGTERM,
    /// as Kubernetes does with a pod it rolls (the endpoint goes while preStop sleeps).
    pub fn retire(&mut self, tier: Tier, index: usize) {
        let (replicas, service) = self.tier(tier);
        service.remove_backend(replicas[index].address);
        replicas[index].terminate();
    }

    /// Waits for retired replica `index` of `tier` to exit cleanly, then puts
    /// a new one serving in its place and in the Service.
    pub async fn replace(&mut self, tier: Tier, index: usize) {
        let retired = &mut self.tier(tier).0[index];
        let exit = retired.wait_for_exit(EXIT_WITHIN).await;
        assert!(
            exit.success(),
            "{} exited with {exit} after SIGTERM",
            retired.name
        );
        let replica = match tier {
            Tier::Activity => self.setup.spawn_activity().await,
            Tier::Admin => self.setup.spawn_admin().await,
        };
        let (replicas, service) = self.tier(tier);
        service.add_backend(replica.address);
        replicas[index] = replica;
    }

    /// Starts one more activity replica, serving but in no Service yet;
    /// returns its index.
    pub async fn add_activity(&mut self) -> usize {
        let replica = self.setup.spawn_activity().await;
        self.activity.push(replica);
        self.activity.len() - 1
    }

    /// Makes `ACTIVITY_PODS` resolve to activity `replicas` (indexes), as
    /// the DNS answer of a headless Service lists its ready pods.
    pub fn resolve_activity_to(&self, replicas: &[usize]) {
        assert!(
            self.setup.options.activity_by_name,
            "only replicas found by name are in the hosts file"
        );
        let addresses: Vec<SocketAddr> = replicas
            .iter()
            .map(|index| self.activity[*index].address)
            .collect();
        write_hosts(&self.setup.hosts, &addresses);
    }

    /// Adds the load users: accounts with the seeded password, straight into
    /// PostgreSQL, and a token for each.
    async fn seed_load_users(&self) -> Vec<LoadUser> {
        let names: Vec<String> = (1..=self.setup.options.load_users)
            .map(|n| format!("user{n:04}"))
            .collect();
        let ids = self.insert_users(&names, Role::User).await;
        names
            .into_iter()
            .zip(ids)
            .map(|(username, id)| LoadUser {
                token: self.token_for(id, Role::User),
                id,
                username,
            })
            .collect()
    }

    /// Accounts named `names`, with the seeded password (its hash copied from
    /// the admin's, made by the CLI), in the order given.
    pub async fn insert_users(&self, names: &[String], role: Role) -> Vec<Uuid> {
        let ids: Vec<Uuid> = names.iter().map(|_| Uuid::new_v4()).collect();
        sqlx::query(
            "INSERT INTO users (id, username, password_hash, role, display_name)
             SELECT t.id, t.name, admin.password_hash, $3, t.name
             FROM unnest($1::uuid[], $2::text[]) AS t(id, name),
                  (SELECT password_hash FROM users WHERE username = $4) AS admin",
        )
        .bind(&ids)
        .bind(names)
        .bind(role.as_str())
        .bind(ADMIN)
        .execute(&self.pool)
        .await
        .expect("users inserted");
        ids
    }

    /// One account, as `insert_users` makes them.
    pub async fn create_user(&self, username: &str, role: Role) -> Uuid {
        self.insert_users(&[username.to_owned()], role).await[0]
    }

    /// A token for `user_id`, as Login would sign it.
    pub fn token_for(&self, user_id: Uuid, role: Role) -> String {
        self.issuer
            .issue(user_id, role, crate::now())
            .expect("a token within the lifetime rules")
            .token
    }

    /// A new browser connection to the gateway.
    pub async fn browser(&self) -> WebClient {
        WebClient::connect(self.gateway_address())
            .await
            .expect("the gateway accepts connections")
    }

    /// Signs `username` in through the gateway, with the seeded password.
    pub async fn login(&self, username: &str) -> Result<LoginResponse, CallError> {
        let request = LoginRequest {
            username: username.to_owned(),
            password: PASSWORD.to_owned(),
        };
        self.browser()
            .await
            .unary(LOGIN, None, &request, CALL_DEADLINE)
            .await
    }

    /// Signs the holder of `token` out through the gateway.
    pub async fn logout(&self, token: &str) -> Result<LogoutResponse, CallError> {
        self.browser()
            .await
            .unary(
                LOGOUT,
                Some(token),
                &LogoutRequest::default(),
                CALL_DEADLINE,
            )
            .await
    }

    /// One page of statuses through the gateway, as the admin sees it.
    pub async fn list(
        &self,
        filter: StatusFilter,
        page_token: &str,
    ) -> Result<ListUserStatusesResponse, CallError> {
        let request = ListUserStatusesRequest {
            page_size: 500,
            page_token: page_token.to_owned(),
            filter: filter as i32,
            ..Default::default()
        };
        self.browser()
            .await
            .unary(LIST, Some(&self.admin_token), &request, CALL_DEADLINE)
            .await
    }

    /// Every user online, by username (sorted), walking every page.
    pub async fn online_usernames(&self) -> Result<Vec<String>, CallError> {
        let mut names = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self.list(StatusFilter::Online, &page_token).await?;
            names.extend(
                page.statuses
                    .into_iter()
                    .map(|status: UserStatus| status.username),
            );
            if page.next_page_token.is_empty() {
                names.sort();
                return Ok(names);
            }
            page_token = page.next_page_token;
        }
    }

    /// Opens the admin's status stream through the gateway, on a connection of its own.
    pub async fn watch(&self) -> Result<WebStream, CallError> {
        self.browser()
            .await
            .stream(
                WATCH,
                Some(&self.admin_token),
                &WatchUserStatusesRequest {},
                CALL_DEADLINE,
            )
            .await
    }

    /// A direct connection to the Redis (not through any proxy).
    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.redis.url.as_str())
            .expect("a valid URL")
            .get_multiplexed_async_connection()
            .await
            .expect("the throwaway Redis answers")
    }

    /// The Redis server's process id (from `INFO server`).
    pub async fn redis_pid(&self) -> u32 {
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut self.redis().await)
            .await
            .expect("Redis answers INFO");
        info.lines()
            .find_map(|line| line.strip_prefix("process_id:"))
            .and_then(|pid| pid.trim().parse().ok())
            .expect("INFO server names the process id")
    }

    /// Kills the Redis (SIGKILL): its data is gone with it.
    pub fn kill_redis(&mut self) {
        self.redis.stop();
    }

    /// Starts an empty Redis on the killed one's port.
    pub async fn restart_redis(&mut self) {
        self.redis = ThrowawayRedis::start_on(&self.redis_port.to_string()).await;
    }

    /// Writes `figures` to `target/reliability/<name>.txt` (and prints them):
    /// what this run measured, for docs/reliability.md.
    pub fn report(&self, name: &str, figures: &str) {
        println!("== {name}\n{figures}");
        let dir = crate::binaries::target_dir().join("reliability");
        if std::fs::create_dir_all(&dir).is_ok()
            && let Ok(mut file) = std::fs::File::create(dir.join(format!("{name}.txt")))
        {
            let _ = writeln!(file, "{figures}");
        }
    }
}

impl Setup {
    fn common_env(&self) -> Env {
        env(&[
            ("RUST_LOG", "info"),
            (
                "DATABASE_URL",
                &format!("{}/{}", self.server_url, self.database),
            ),
            ("REDIS_URL", &self.redis_url),
            ("PRESENCE_REDIS_KEY_PREFIX", &self.prefix),
            ("PRESENCE_JWT_SECRET", SECRET),
        ])
    }

    fn next_name(&mut self, service: &str) -> String {
        self.started += 1;
        format!("{service}-{}", self.started)
    }

    async fn spawn_activity(&mut self) -> Process {
        let address = if self.options.activity_by_name {
            self.activity_hosts += 1;
            let host = Ipv4Addr::new(127, 0, 0, 1 + self.activity_hosts);
            SocketAddr::from((host, self.activity_port))
        } else {
            loopback(free_port())
        };
        let mut environment = self.common_env();
        environment.extend(env(&[
            ("PRESENCE_ACTIVITY_ADDR", &address.to_string()),
            // Sign-ins come through the gateway, which names the browser.
            ("PRESENCE_TRUSTED_PROXIES", "127.0.0.1/32"),
        ]));
        environment.extend(self.options.activity_env.iter().cloned());
        let name = self.next_name("activity");
        let mut process =
            Process::spawn(&name, "activity-service", address, &environment, &self.dir);
        process.wait_until_serving("").await;
        process
    }

    /// Its drain is short: the tests stop many.
    async fn spawn_admin(&mut self) -> Process {
        let address = loopback(free_port());
        let mut environment = self.common_env();
        environment.extend(env(&[
            ("PRESENCE_ADMIN_ADDR", &address.to_string()),
            ("PRESENCE_DRAIN_SECONDS", "5"),
        ]));
        environment.extend(self.options.admin_env.iter().cloned());
        let name = self.next_name("admin");
        let mut process = Process::spawn(&name, "admin-service", address, &environment, &self.dir);
        process.wait_until_serving("").await;
        process
    }

    async fn spawn_gateway(&mut self, activity: SocketAddr, admin: SocketAddr) -> Process {
        let address = loopback(free_port());
        let activity_url = if self.options.activity_by_name {
            format!("http://{ACTIVITY_PODS}:{}", self.activity_port)
        } else {
            format!("http://{activity}")
        };
        let mut environment = env(&[
            // Every call is in the access log at info: too much under load;
            // a call sent again (`upstream`, at debug) is worth seeing.
            (
                "RUST_LOG",
                "info,gateway::metrics=warn,gateway::upstream=debug",
            ),
            ("PRESENCE_GATEWAY_ADDR", &address.to_string()),
            ("PRESENCE_METRICS_ADDR", &loopback(free_port()).to_string()),
            ("PRESENCE_ACTIVITY_URL", &activity_url),
            ("PRESENCE_ADMIN_URL", &format!("http://{admin}")),
            (
                "PRESENCE_WEB_DIR",
                &self.dir.join("web").display().to_string(),
            ),
            ("PRESENCE_JWT_SECRET", SECRET),
            // Two connections per upstream (the default on two cores), said
            // so the tests know how calls spread over the replicas.
            ("PRESENCE_UPSTREAM_CONNECTIONS", "2"),
            // Every user pings from 127.0.0.1, several times a second.
            ("PRESENCE_RATE_PING_PER_USER", "1000000"),
            ("PRESENCE_RATE_PING_PER_IP", "1000000000"),
            ("PRESENCE_RATE_LOGIN_PER_IP", "1000000"),
            ("PRESENCE_DRAIN_SECONDS", "1"),
        ]);
        environment.extend(self.options.gateway_env.iter().cloned());
        let mut gateway = if self.options.activity_by_name {
            Process::spawn_command(
                "gateway",
                with_hosts_file(&self.hosts, &crate::binaries::path("gateway")),
                address,
                &environment,
                &self.dir,
            )
        } else {
            Process::spawn("gateway", "gateway", address, &environment, &self.dir)
        };
        gateway.wait_until_serving("").await;
        // Both upstreams answer through their Service proxies.
        gateway.wait_until_serving("readiness").await;
        gateway
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let failing = std::thread::panicking();
        if failing {
            for process in self
                .activity
                .iter()
                .chain(&self.admin)
                .chain([&self.gateway])
            {
                eprintln!(
                    "---- {} (last lines of its log)\n{}",
                    process.name,
                    process.log_tail(30)
                );
            }
            eprintln!("---- logs kept in {}", self.setup.dir.display());
        }
        self.gateway.kill();
        for process in self.admin.iter_mut().chain(self.activity.iter_mut()) {
            process.kill();
        }
        // A throwaway cluster stops (its own drop) before its directory goes.
        if self.postgres.take().is_none() {
            let _ = Command::new("psql")
                .arg(format!("{}/postgres", self.setup.server_url))
                .args([
                    "-qc",
                    &format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        self.setup.database
                    ),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if !failing {
            let _ = std::fs::remove_dir_all(&self.setup.dir);
        }
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// `program` run in a private mount namespace whose /etc/hosts is `hosts`
/// (the mount goes with the namespace; `exec` leaves the program its pid).
fn with_hosts_file(hosts: &Path, program: &Path) -> Command {
    let mut command = Command::new("unshare");
    command
        .args([
            "--mount",
            "sh",
            "-c",
            r#"mount --bind "$0" /etc/hosts && exec "$@""#,
        ])
        .arg(hosts)
        .arg(program);
    command
}

/// Panics, saying why, unless a process can get `hosts` as its /etc/hosts
/// (root may `unshare --mount`) and resolve `ACTIVITY_PODS` through it.
fn assert_private_hosts_file(hosts: &Path) {
    let mut command = with_hosts_file(hosts, Path::new("getent"));
    let resolved = command
        .args(["ahostsv4", ACTIVITY_PODS])
        .output()
        .unwrap_or_else(|error| panic!("cannot run unshare (util-linux): {error}"));
    assert!(
        resolved.status.success(),
        "the gateway must run in a private mount namespace with the test's hosts file on \
         /etc/hosts (`unshare --mount`, as root), and that failed ({}): {}{}",
        resolved.status,
        String::from_utf8_lossy(&resolved.stdout),
        String::from_utf8_lossy(&resolved.stderr)
    );
}

/// Writes the hosts file naming `ACTIVITY_PODS` at `addresses`: over the
/// old one in place (it is bind-mounted, so a new file would not be seen)
/// and at one size, so a reader never finds it cut short.
fn write_hosts(path: &Path, addresses: &[SocketAddr]) {
    let mut text = String::from("127.0.0.1 localhost\n");
    for address in addresses {
        let ip: IpAddr = address.ip();
        text.push_str(&format!("{ip} {ACTIVITY_PODS}\n"));
    }
    assert!(
        text.len() < HOSTS_BYTES,
        "too many replicas for the hosts file"
    );
    let padding = HOSTS_BYTES - text.len() - 1;
    text.push_str(&format!("{:<padding$}\n", "#"));
    let file = std::fs::File::options()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .expect("the stack's hosts file");
    file.write_all_at(text.as_bytes(), 0)
        .expect("the hosts file written");
}

/// The shared PostgreSQL server (no database), as `deploy/local/services.sh`
/// exports it.
fn shared_server_url() -> String {
    if let Ok(url) = std::env::var("DATABASE_SERVER_URL") {
        return url;
    }
    std::env::var("TEST_DATABASE_URL")
        .ok()
        .and_then(|url| url.rsplit_once('/').map(|(server, _)| server.to_owned()))
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// Runs `activity-service <args>` with `env` (and `stdin` as its input),
/// and panics with its output if it fails.
async fn cli(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) {
    let binary = crate::binaries::path("activity-service");
    let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    let stdin = stdin.map(|line| format!("{line}\n"));
    let output = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(&binary)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(env)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run {}: {error}", binary.display()));
        let mut input = child.stdin.take().expect("a piped stdin");
        if let Some(line) = stdin {
            input
                .write_all(line.as_bytes())
                .expect("the CLI reads its stdin");
        }
        drop(input);
        let output = child.wait_with_output().expect("the CLI runs");
        (args, output)
    })
    .await
    .expect("the CLI ran");
    let (args, output) = output;
    assert!(
        output.status.success(),
        "activity-service {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
