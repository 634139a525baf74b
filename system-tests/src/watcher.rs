//! An admin's live status page, as the web app keeps it: a
//! WatchUserStatuses stream through the gateway, opened again whenever it
//! ends (after a short pause; the web app backs off from one second, and
//! gives up only on UNAUTHENTICATED or PERMISSION_DENIED, which the tests
//! treat as failures), each stream's snapshot and live changes recorded.
//!
//! Ownership: one task, ended when the watcher is dropped.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use presence_proto::admin::{UserStatusEvent, WatchUserStatusesRequest};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::grpc_web::WebClient;
use crate::stack::CALL_DEADLINE;

const WATCH: &str = "/presence.admin.v1.AdminService/WatchUserStatuses";
/// The pause before opening a stream again.
const RECONNECT_AFTER: Duration = Duration::from_millis(500);
/// Streams recorded at most per watcher.
const MAX_STREAMS: usize = 1000;

/// One stream, from its opening to its end.
#[derive(Clone, Debug, Default)]
pub struct StreamRecord {
    /// The users online by the snapshot, then by every change since.
    pub online: BTreeSet<String>,
    pub snapshot_complete: bool,
    /// Changes received after the snapshot: (username, online).
    pub changes: Vec<(String, bool)>,
    /// How it ended: `None` while open; a code's name, or what went wrong
    /// (also when it could not open).
    pub ended: Option<String>,
    /// When it ended (or failed to open).
    pub ended_at: Option<Instant>,
}

#[derive(Debug)]
pub struct Watcher {
    streams: Arc<Mutex<Vec<StreamRecord>>>,
    task: JoinHandle<()>,
}

impl Watcher {
    /// Starts watching through the gateway at `gateway` with `token`.
    pub fn start(gateway: SocketAddr, token: String) -> Self {
        let streams = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(watch_forever(gateway, token, streams.clone()));
        Self { streams, task }
    }

    /// Every stream so far, the open one last.
    pub fn streams(&self) -> Vec<StreamRecord> {
        self.streams.lock().clone()
    }

    /// The stream open now, once its snapshot is complete.
    pub fn live(&self) -> Option<StreamRecord> {
        self.streams
            .lock()
            .last()
            .filter(|stream| stream.snapshot_complete && stream.ended.is_none())
            .cloned()
    }

    /// Waits until a stream is live, at most `within`.
    pub async fn wait_until_live(&self, within: Duration) -> StreamRecord {
        crate::eventually(within, "a live status stream", || async { self.live() }).await
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn watch_forever(gateway: SocketAddr, token: String, streams: Arc<Mutex<Vec<StreamRecord>>>) {
    loop {
        {
            let mut streams = streams.lock();
            if streams.len() >= MAX_STREAMS {
                return;
            }
            streams.push(StreamRecord::default());
        }
        let ended = watch_once(gateway, &token, &streams).await;
        if let Some(stream) = streams.lock().last_mut() {
            stream.ended = Some(ended);
            stream.ended_at = Some(Instant::now());
        }
        tokio::time::sleep(RECONNECT_AFTER).await;
    }
}

/// Reads one stream into the last record until it ends; returns how it did.
async fn watch_once(
    gateway: SocketAddr,
    token: &str,
    streams: &Mutex<Vec<StreamRecord>>,
) -> String {
    let client = match WebClient::connect(gateway).await {
        Ok(client) => client,
        Err(error) => return error.label(),
    };
    let mut stream = match client
        .stream(
            WATCH,
            Some(token),
            &WatchUserStatusesRequest {},
            CALL_DEADLINE,
        )
        .await
    {
        Ok(stream) => stream,
        Err(error) => return error.label(),
    };
    loop {
        match stream.next::<UserStatusEvent>().await {
            Ok(Some(event)) => {
                let mut streams = streams.lock();
                let record = streams.last_mut().expect("this stream's record");
                apply(record, event);
            }
            Ok(None) => return "OK".to_owned(),
            Err(error) => return error.label(),
        }
    }
}

fn apply(record: &mut StreamRecord, event: UserStatusEvent) {
    if event.resync {
        record.online.clear();
        record.snapshot_complete = false;
        return;
    }
    if event.snapshot_complete {
        record.snapshot_complete = true;
        return;
    }
    let Some(status) = event.status else {
        return;
    };
    if record.snapshot_complete {
        record
            .changes
            .push((status.username.clone(), status.online));
    }
    if status.online {
        record.online.insert(status.username);
    } else {
        record.online.remove(&status.username);
    }
}
