//! A service run as a child process, as an operator runs it: configured by
//! environment variables only (nothing inherited from the test's own
//! environment but `PATH`; `NO_COLOR` keeps its log plain), its output in a
//! log file the tests print when they fail, stopped by signals (SIGTERM as
//! Kubernetes sends it, SIGKILL as a crash or the OOM killer), and watched
//! through its gRPC health and its RSS.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::binaries;

/// How long a service may take to answer its health check as SERVING.
pub const START_WITHIN: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct Process {
    /// Names it in messages and its log file (`activity-1`, `gateway`, ...).
    pub name: String,
    /// Where its gRPC (or gRPC-Web) listener is.
    pub address: SocketAddr,
    child: Child,
    log: PathBuf,
    exited: Option<ExitStatus>,
}

impl Process {
    /// Starts `binary` with exactly `env` (plus `PATH`), its output appended
    /// to `<log_dir>/<name>.log`; `address` is where it was told to listen.
    pub fn spawn(
        name: &str,
        binary: &str,
        address: SocketAddr,
        env: &[(String, String)],
        log_dir: &Path,
    ) -> Self {
        let log = log_dir.join(format!("{name}.log"));
        let output = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .expect("a log file in the test's directory");
        let errors = output.try_clone().expect("the log file, twice");
        let child = Command::new(binaries::path(binary))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            // Plain text in the log files.
            .env("NO_COLOR", "1")
            .envs(env.iter().map(|(name, value)| (name, value)))
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(errors)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {binary}: {error}"));
        Self {
            name: name.to_owned(),
            address,
            child,
            log,
            exited: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Asks it to stop, as Kubernetes does (SIGTERM).
    pub fn terminate(&self) {
        signal(self.pid(), "TERM");
    }

    /// Freezes it (SIGSTOP), as a hung process or a node cut off the network
    /// looks to its peers: its sockets stay open, nothing answers.
    pub fn pause(&self) {
        signal(self.pid(), "STOP");
    }

    /// Lets a paused process run again (SIGCONT).
    pub fn resume(&self) {
        signal(self.pid(), "CONT");
    }

    /// Kills it at once (SIGKILL), as a crash would, and reaps it.
    pub fn kill(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            self.exited = self.child.wait().ok();
        }
    }

    /// Whether it has exited (reaping it if so).
    pub fn has_exited(&mut self) -> bool {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited.is_some()
    }

    /// Waits for it to exit on its own (after `terminate`), at most `within`.
    pub async fn wait_for_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = tokio::time::Instant::now() + within;
        while !self.has_exited() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} did not exit within {within:?}; its log:\n{}",
                self.name,
                self.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.exited.expect("it exited")
    }

    /// Its resident memory in KiB (VmRSS), as the kernel counts it.
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.pid()).unwrap_or_else(|| panic!("{} has no VmRSS (exited?)", self.name))
    }

    /// Waits until its log has a line containing `text`, at most `within`.
    pub async fn wait_for_log(&self, text: &str, within: Duration) {
        crate::eventually(
            within,
            &format!("{} to log {text:?}", self.name),
            || async {
                std::fs::read_to_string(&self.log)
                    .is_ok_and(|log| log.contains(text))
                    .then_some(())
            },
        )
        .await;
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Waits until its gRPC health says `service` ("" for the whole server)
    /// is SERVING; panics with its log if it exits or takes longer than
    /// `START_WITHIN`.
    pub async fn wait_until_serving(&mut self, service: &str) {
        let deadline = tokio::time::Instant::now() + START_WITHIN;
        loop {
            assert!(
                !self.has_exited(),
                "{} exited at start ({:?}); its log:\n{}",
                self.name,
                self.exited,
                self.log_tail(40)
            );
            if serving(self.address, service).await {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} did not report {service:?} SERVING within {START_WITHIN:?}; its log:\n{}",
                self.name,
                self.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The resident memory of process `pid` in KiB (VmRSS); `None` if it is gone.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Sends `SIG<name>` to `pid` (the `kill` command spares the kit an unsafe call).
pub fn signal(pid: u32, name: &str) {
    let sent = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("the kill command runs");
    assert!(sent.success(), "kill -{name} {pid} failed");
}

/// Whether the gRPC health service at `address` reports `service` SERVING,
/// asked within a second.
pub async fn serving(address: SocketAddr, service: &str) -> bool {
    let check = async {
        let channel = Channel::from_shared(format!("http://{address}"))
            .expect("a valid URI")
            .connect()
            .await
            .ok()?;
        let answer = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .ok()?;
        Some(answer.into_inner().status == ServingStatus::Serving as i32)
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), check).await,
        Ok(Some(true))
    )
}
