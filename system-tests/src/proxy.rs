//! A TCP proxy the tests put between two processes, to do to the network
//! what Kubernetes and bad days do to it:
//!
//! - as a *Service*: each new connection goes to the next of a set of
//!   backends, which the tests change while traffic flows (a backend is
//!   removed before its process gets SIGTERM, as the endpoints controller
//!   removes a terminating pod while its preStop hook sleeps); connections
//!   already open stay where they are, as with kube-proxy;
//! - *latency*: every chunk is delivered that long after it was read, in
//!   each direction;
//! - a *blackhole*: connections are accepted but nothing passes either way,
//!   and nothing is read, so a sender's socket buffers fill as when packets
//!   are dropped; the held bytes flow again when the proxy heals, as after a
//!   partition.
//!
//! Ownership: the accept task and every connection task watch `stop`, which
//! dropping the proxy sends, so no connection outlives the proxy. At most
//! `MAX_CONNECTIONS` connections are open at once (more are closed at once),
//! and each direction holds at most `CHUNKS_IN_FLIGHT` chunks.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Connections open at once through one proxy; more are closed on accept.
const MAX_CONNECTIONS: usize = 1024;
/// Chunks read but not yet delivered, per direction of a connection.
const CHUNKS_IN_FLIGHT: usize = 64;
const CHUNK_BYTES: usize = 16 * 1024;
/// How long connecting to one backend may take before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// What the proxy does to the bytes it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Each chunk delivered `latency` after it was read (zero: at once).
    Pass { latency: Duration },
    /// Nothing read, nothing delivered; new connections are accepted and held.
    Blackhole,
}

#[derive(Debug)]
pub struct Proxy {
    pub address: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
}

#[derive(Debug)]
struct Shared {
    backends: Mutex<Vec<SocketAddr>>,
    next: AtomicUsize,
    mode: watch::Sender<Mode>,
    /// Connections open at once, in all.
    open: AtomicUsize,
    /// Connections open to each backend.
    open_to: Mutex<HashMap<SocketAddr, usize>>,
}

impl Proxy {
    /// A proxy on a free loopback port in front of `backends`.
    pub async fn start(backends: Vec<SocketAddr>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port for the proxy");
        let address = listener.local_addr().expect("a bound address");
        let shared = Arc::new(Shared {
            backends: Mutex::new(backends),
            next: AtomicUsize::new(0),
            mode: watch::channel(Mode::Pass {
                latency: Duration::ZERO,
            })
            .0,
            open: AtomicUsize::new(0),
            open_to: Mutex::default(),
        });
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(accept(listener, shared.clone(), stopped));
        Self {
            address,
            shared,
            stop,
        }
    }

    /// Sends new connections to `backend` too.
    pub fn add_backend(&self, backend: SocketAddr) {
        self.shared.backends.lock().push(backend);
    }

    /// Sends no new connection to `backend` (those open stay open).
    pub fn remove_backend(&self, backend: SocketAddr) {
        self.shared.backends.lock().retain(|b| *b != backend);
    }

    pub fn backends(&self) -> Vec<SocketAddr> {
        self.shared.backends.lock().clone()
    }

    /// Delays every chunk by `latency` in each direction.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.mode.send_replace(Mode::Pass { latency });
    }

    /// Lets nothing through until `heal`.
    pub fn blackhole(&self) {
        self.shared.mode.send_replace(Mode::Blackhole);
    }

    /// Passes everything at once again (what a blackhole held flows on).
    pub fn heal(&self) {
        self.set_latency(Duration::ZERO);
    }

    /// Connections open now to `backend`.
    pub fn open_connections_to(&self, backend: SocketAddr) -> usize {
        self.shared
            .open_to
            .lock()
            .get(&backend)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        let client = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => client,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => return,
        };
        if shared.open.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
            continue;
        }
        shared.open.fetch_add(1, Ordering::Relaxed);
        let (shared, mut stop) = (shared.clone(), stop.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = carry(client, &shared) => {}
                () = stopped(&mut stop) => {}
            }
            shared.open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Carries one connection: held while the proxy is a blackhole, then
/// joined to a backend, then relayed both ways until both ends are done.
async fn carry(client: TcpStream, shared: &Shared) {
    let mut mode = shared.mode.subscribe();
    passing(&mut mode).await;
    let Some((backend, server)) = shared.connect().await else {
        return;
    };
    let _open = OpenTo::count(shared, backend);
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let _ = tokio::try_join!(
        pipe(client_read, server_write, shared.mode.subscribe()),
        pipe(server_read, client_write, shared.mode.subscribe()),
    );
}

impl Shared {
    /// A connection to the next backend that accepts one, trying each once.
    async fn connect(&self) -> Option<(SocketAddr, TcpStream)> {
        let backends = self.backends.lock().clone();
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        for turn in 0..backends.len() {
            let backend = backends[(first + turn) % backends.len()];
            if let Ok(Ok(server)) =
                tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(backend)).await
            {
                return Some((backend, server));
            }
        }
        None
    }
}

/// Counts a connection to a backend while it is open.
struct OpenTo<'a> {
    shared: &'a Shared,
    backend: SocketAddr,
}

impl<'a> OpenTo<'a> {
    fn count(shared: &'a Shared, backend: SocketAddr) -> Self {
        *shared.open_to.lock().entry(backend).or_default() += 1;
        Self { shared, backend }
    }
}

impl Drop for OpenTo<'_> {
    fn drop(&mut self) {
        if let Some(open) = self.shared.open_to.lock().get_mut(&self.backend) {
            *open -= 1;
        }
    }
}

/// Returns once the proxy is dropped.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Returns once the proxy passes traffic.
async fn passing(mode: &mut watch::Receiver<Mode>) {
    let _ = mode.wait_for(|mode| *mode != Mode::Blackhole).await;
}

fn latency(mode: &watch::Receiver<Mode>) -> Duration {
    match *mode.borrow() {
        Mode::Pass { latency } => latency,
        Mode::Blackhole => Duration::ZERO,
    }
}

/// One direction of a connection: a reader that stops reading in a
/// blackhole, a bounded queue of chunks with the time each is due, and a
/// writer that delivers them when due (and holds them in a blackhole). The
/// end of the input is passed on as a shutdown of the output.
async fn pipe(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
) -> io::Result<()> {
    let (chunks, mut due_chunks) = mpsc::channel::<(Instant, Bytes)>(CHUNKS_IN_FLIGHT);
    let mut writer_mode = mode.clone();
    let read = async move {
        let mut buffer = vec![0u8; CHUNK_BYTES];
        loop {
            passing(&mut mode).await;
            let read = from.read(&mut buffer).await?;
            if read == 0 {
                return Ok::<_, io::Error>(());
            }
            let due = Instant::now() + latency(&mode);
            if chunks
                .send((due, Bytes::copy_from_slice(&buffer[..read])))
                .await
                .is_err()
            {
                return Ok(());
            }
        }
    };
    let write = async move {
        while let Some((due, chunk)) = due_chunks.recv().await {
            tokio::time::sleep_until(due).await;
            passing(&mut writer_mode).await;
            to.write_all(&chunk).await?;
        }
        to.shutdown().await
    };
    tokio::try_join!(read, write).map(|_| ())
}
