//! A throwaway PostgreSQL cluster (initdb + pg_ctl under a temporary
//! directory, on a free loopback port) for the tests that stop PostgreSQL;
//! the machine's shared server is never stopped. PostgreSQL refuses to run
//! as root, so as root the cluster runs as the `postgres` system account
//! (as `deploy/local/services.sh` runs its own).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use presence_testkit::free_port;

#[derive(Debug)]
pub struct ThrowawayPostgres {
    cluster: Cluster,
}

/// Where the cluster is and how its programs run (cloned into blocking tasks).
#[derive(Debug, Clone)]
struct Cluster {
    /// Holds the data directory, the socket and the server log.
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
    as_root: bool,
}

impl ThrowawayPostgres {
    /// Creates the cluster under `parent` (which must exist) and starts it.
    pub async fn start(parent: &Path) -> Self {
        let postgres = Self {
            cluster: Cluster {
                dir: parent.join("postgres"),
                port: free_port(),
                bin: bin_dir(),
                as_root: is_root(),
            },
        };
        let cluster = postgres.cluster.clone();
        tokio::task::spawn_blocking(move || cluster.init())
            .await
            .expect("initdb ran");
        postgres.start_again().await;
        postgres
    }

    /// `postgres://postgres@127.0.0.1:<port>`, the server (no database).
    pub fn server_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.cluster.port)
    }

    /// Stops the server the way a failover or an operator does: `pg_ctl stop
    /// -m fast` ends every session at once and shuts down cleanly.
    pub async fn stop(&self) {
        let cluster = self.cluster.clone();
        tokio::task::spawn_blocking(move || cluster.pg_ctl(&["stop", "-m", "fast", "-w"]))
            .await
            .expect("pg_ctl ran");
    }

    /// Starts the server again on the same port and data directory, and
    /// returns once it accepts connections.
    pub async fn start_again(&self) {
        let cluster = self.cluster.clone();
        tokio::task::spawn_blocking(move || {
            let options = format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
                cluster.port,
                cluster.dir.display()
            );
            let log = cluster.dir.join("server.log").display().to_string();
            cluster.pg_ctl(&["start", "-w", "-l", &log, "-o", &options]);
        })
        .await
        .expect("pg_ctl ran");
    }
}

impl Cluster {
    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn init(&self) {
        std::fs::create_dir_all(self.data()).expect("a directory for the cluster");
        if self.as_root {
            let owned = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(&self.dir)
                .status()
                .expect("chown runs");
            assert!(owned.success(), "cannot give the cluster to postgres");
        }
        let data = self.data().display().to_string();
        self.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "--no-instructions",
            ],
        );
    }

    fn pg_ctl(&self, args: &[&str]) {
        let data = self.data().display().to_string();
        let mut all = vec!["-D", data.as_str()];
        all.extend_from_slice(args);
        self.run("pg_ctl", &all);
    }

    /// Runs one of PostgreSQL's programs (as `postgres` when we are root)
    /// and panics with its output when it fails.
    fn run(&self, program: &str, args: &[&str]) -> Output {
        let output = self
            .command(program)
            .args(args)
            .output()
            .unwrap_or_else(|error| panic!("cannot run {program}: {error}"));
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}{}\nserver log:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
        );
        output
    }

    /// A command running `program` of PostgreSQL's, as `postgres` when we are root.
    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if self.as_root {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }
}

impl Drop for ThrowawayPostgres {
    fn drop(&mut self) {
        let cluster = &self.cluster;
        if cluster.data().join("postmaster.pid").exists() {
            let data = cluster.data().display().to_string();
            let _ = cluster
                .command("pg_ctl")
                .args(["-D", &data, "stop", "-m", "immediate", "-w"])
                .output();
        }
        let _ = std::fs::remove_dir_all(&cluster.dir);
    }
}

/// The newest installed PostgreSQL's programs (Debian: /usr/lib/postgresql/<major>/bin).
fn bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (deploy/local/services.sh installs it)")
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse().ok()?;
            Some((major, entry.path().join("bin")))
        })
        .filter(|(_, bin)| bin.join("initdb").is_file())
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .expect("an initdb under /usr/lib/postgresql/<major>/bin")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}
