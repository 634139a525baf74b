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
        Self::spawn_command(
            name,
            Command::new(binaries::path(binary)),
            address,
            env,
            log_dir,
        )
    }

    /// Starts `command` as `spawn` starts a binary (a wrapper that ends by
    /// exec'ing it, so the process is the service's own).
    pub fn spawn_command(
        name: &str,
        mut command: Command,
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
        let program = command.get_program().to_string_lossy().into_owned();
        let child = command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            // Plain text in the log files.
            .env("NO_COLOR", "1")
            .envs(env.iter().map(|(name, value)| (name, value)))
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(errors)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {program}: {error}"));
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

    /// How many lines of its log contain `text`.
    pub fn log_lines_with(&self, text: &str) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains(text))
            .count()
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

/// The CPU time of process `pid` so far (user + system), in clock ticks;
/// `None` if it is gone.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    cpu_ticks_in(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// utime + stime of a `/proc/<pid>/stat` line (fields 14 and 15). The
/// command name (field 2, in parentheses) may hold spaces and parentheses,
/// so fields are counted after its last `)`.
pub fn cpu_ticks_in(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

/// Clock ticks per second, the unit of `cpu_ticks` (`getconf CLK_TCK`;
/// 100 on every Linux this runs on).
pub fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .filter(|ticks| *ticks > 0)
        .unwrap_or(100)
}

/// The open-file limit of a `/proc/<pid>/limits` text: `(soft, hard)`,
/// `u64::MAX` for "unlimited".
pub fn open_files_limit_in(limits: &str) -> Option<(u64, u64)> {
    let line = limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))?;
    let value = |text: &str| match text {
        "unlimited" => Some(u64::MAX),
        number => number.parse().ok(),
    };
    let mut fields = line.split_whitespace();
    Some((value(fields.next()?)?, value(fields.next()?)?))
}

/// Raises this process's soft open-file limit to its hard limit (children
/// started afterwards inherit it) and returns it. The `prlimit` command
/// spares the kit an unsafe `setrlimit`.
pub fn raise_open_files_limit() -> Result<u64, String> {
    let read = || {
        std::fs::read_to_string("/proc/self/limits")
            .ok()
            .as_deref()
            .and_then(open_files_limit_in)
            .ok_or_else(|| "cannot read the open-file limit from /proc/self/limits".to_owned())
    };
    let (soft, hard) = read()?;
    if soft < hard {
        let limit = if hard == u64::MAX {
            "unlimited".to_owned()
        } else {
            hard.to_string()
        };
        let status = Command::new("prlimit")
            .arg(format!("--pid={}", std::process::id()))
            .arg(format!("--nofile={limit}:{limit}"))
            .status()
            .map_err(|error| format!("cannot run prlimit (util-linux): {error}"))?;
        if !status.success() {
            return Err(format!("prlimit --nofile={limit} failed ({status})"));
        }
    }
    Ok(read()?.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_user_plus_system_time_counted_after_the_command_name() {
        let stat = "4242 (tokio (worker) 1) S 1 4242 4242 0 -1 4194560 2000 0 0 0 \
                    150 25 0 0 20 0 3 0 12345 1000000 500 18446744073709551615";
        assert_eq!(cpu_ticks_in(stat), Some(175));
        assert_eq!(cpu_ticks_in("4242 (cut) S 1 2"), None);
    }

    #[test]
    fn the_open_file_limit_is_read_soft_then_hard() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             95000                95000                processes \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(open_files_limit_in(limits), Some((1024, 524_288)));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(open_files_limit_in(unlimited), Some((u64::MAX, u64::MAX)));
        assert_eq!(open_files_limit_in("Max processes 1 1 processes\n"), None);
    }
}
