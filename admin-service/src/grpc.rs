//! The gRPC handlers of `presence.admin.v1.AdminService`: authorise the
//! caller, parse the request into domain values, ask the listing, settings or
//! watch code, and shape the answer. `AdminError` chooses every status.
//!
//! Each open status stream is fed by its own task, which holds the stream's
//! place (`WatcherSlot`) and ends the stream when the caller's session ends
//! (expiry, revocation), when the server stops, or when the client stops
//! reading, so no feed outlives what it serves.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use presence_core::auth::authenticate;
use presence_core::config::PingArgs;
use presence_core::threshold::{IdleMinutes, ThresholdMinutes};
use presence_core::token::{Caller, Role, TokenVerifier};
use presence_proto::admin::admin_service_server::AdminService;
use presence_proto::admin::{
    ActivitySettings as ActivitySettingsMessage, BatchGetUserStatusesRequest,
    BatchGetUserStatusesResponse, GetActivitySettingsRequest, GetOnlineHistoryRequest,
    GetOnlineHistoryResponse, GetUserPresenceRequest, ListUserStatusesRequest,
    ListUserStatusesResponse, OnlineCountPoint, StatusFilter, UpdateActivitySettingsRequest,
    UserPresence, UserStatus, UserStatusEvent, WatchUserStatusesRequest,
};
use presence_proto::{timestamp, timestamp_from};
use presence_store::revocation::RevocationCheck;
use presence_store::settings::ActivitySettings;
use tokio::sync::mpsc::error::SendTimeoutError;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use crate::error::AdminError;
use crate::listing::StatusReader;
use crate::online_history;
use crate::page_token::PageTokens;
use crate::presence::login_event;
use crate::search::SearchQuery;
use crate::status::to_proto;
use crate::store::{ListFilter, SettingsChange};
use crate::watch::{StatusHub, WatcherSlot, WatcherSlots};

#[derive(Debug, Clone)]
pub struct AdminHandler {
    pub reader: StatusReader,
    pub verifier: TokenVerifier,
    pub revocations: RevocationCheck,
    pub page_tokens: PageTokens,
    pub hub: StatusHub,
    pub ping: PingArgs,
    pub watch_buffer: usize,
    /// Becomes true when the server is stopping: open streams end so the
    /// drain can finish (clients reconnect to another replica).
    pub stopping: watch::Receiver<bool>,
    /// The caps on open status streams.
    pub watchers: WatcherSlots,
}

impl AdminHandler {
    async fn authorize(
        &self,
        metadata: &MetadataMap,
        allowed: &[Role],
    ) -> Result<Caller, AdminError> {
        let caller = authenticate(&self.verifier, metadata)?;
        if !allowed.contains(&caller.role) {
            return Err(AdminError::PermissionDenied(
                if allowed.contains(&Role::Service) {
                    "this method needs an admin or service token"
                } else {
                    "this method needs an admin token"
                },
            ));
        }
        // A token revoked by logout or by its user's disabling stops working
        // here too; without Redis that is checked in PostgreSQL, and a token
        // neither can vouch for is refused (fail closed).
        self.revocations.ensure_not_revoked(&caller).await?;
        Ok(caller)
    }

    async fn list(
        &self,
        request: Request<ListUserStatusesRequest>,
    ) -> Result<ListUserStatusesResponse, AdminError> {
        self.authorize(request.metadata(), &[Role::Admin]).await?;
        let request = request.into_inner();
        let filter_code = match StatusFilter::try_from(request.filter) {
            Ok(StatusFilter::Unspecified) => StatusFilter::All,
            Ok(filter) => filter,
            Err(_) => {
                return Err(AdminError::InvalidArgument(
                    "filter must be ALL, ONLINE or OFFLINE".into(),
                ));
            }
        };
        let filter = match filter_code {
            StatusFilter::Online => ListFilter::Online,
            StatusFilter::Offline => ListFilter::Offline,
            _ => ListFilter::All,
        };
        let search = SearchQuery::parse(&request.query)?;
        let query = search.normalised();
        let after = self
            .page_tokens
            .read(&request.page_token, filter_code as i32, &query)?;
        let listing = self
            .reader
            .list(filter, request.page_size, after, search)
            .await?;
        let next_page_token = listing
            .continue_after
            .as_deref()
            .map(|after| self.page_tokens.issue(filter_code as i32, &query, after))
            .unwrap_or_default();
        Ok(ListUserStatusesResponse {
            statuses: listing
                .statuses
                .iter()
                .map(|(row, status)| to_proto(row.id, &row.username, &row.display_name, status))
                .collect(),
            next_page_token,
            total_count: listing.total,
            online_count: listing.online - listing.away,
            away_count: listing.away,
            offline_count: listing.total - listing.online,
            threshold_minutes: u32::from(listing.threshold.minutes()),
            generated_at: Some(timestamp(listing.generated_at)),
            degraded: listing.degraded,
        })
    }

    async fn batch(
        &self,
        request: Request<BatchGetUserStatusesRequest>,
    ) -> Result<BatchGetUserStatusesResponse, AdminError> {
        self.authorize(request.metadata(), &[Role::Admin, Role::Service])
            .await?;
        let batch = self.reader.batch(&request.get_ref().user_ids).await?;
        Ok(BatchGetUserStatusesResponse {
            statuses: batch
                .statuses
                .iter()
                .map(|(row, status)| to_proto(row.id, &row.username, &row.display_name, status))
                .collect(),
            not_found: batch.not_found.iter().map(ToString::to_string).collect(),
            threshold_minutes: u32::from(batch.threshold.minutes()),
            generated_at: Some(timestamp(batch.generated_at)),
            degraded: batch.degraded,
        })
    }

    async fn online_history(
        &self,
        request: Request<GetOnlineHistoryRequest>,
    ) -> Result<GetOnlineHistoryResponse, AdminError> {
        self.authorize(request.metadata(), &[Role::Admin]).await?;
        let request = request.into_inner();
        let (Some(from), Some(to)) = (request.from, request.to) else {
            return Err(AdminError::InvalidArgument(
                "from and to are required".into(),
            ));
        };
        let (from, to) = (from.seconds, to.seconds);
        if to <= from || to - from > online_history::MAX_RANGE_SECONDS {
            return Err(AdminError::InvalidArgument(
                "to must be after from, and at most 400 days later".into(),
            ));
        }
        let (start, step) = online_history::buckets_for(from, to, request.step_seconds);
        let buckets =
            online_history::history(self.reader.directory.pool(), start, to, step).await?;
        Ok(GetOnlineHistoryResponse {
            points: buckets
                .into_iter()
                .map(|bucket| OnlineCountPoint {
                    at: Some(timestamp(bucket.at)),
                    max_online: u64::try_from(bucket.max_online).unwrap_or_default(),
                    mean_online: bucket.mean_online,
                    samples: u32::try_from(bucket.samples).unwrap_or(u32::MAX),
                })
                .collect(),
            step_seconds: u32::try_from(step).unwrap_or(u32::MAX),
            from: Some(timestamp(start)),
            to: Some(timestamp(to)),
        })
    }

    async fn presence(
        &self,
        request: Request<GetUserPresenceRequest>,
    ) -> Result<UserPresence, AdminError> {
        self.authorize(request.metadata(), &[Role::Admin]).await?;
        let id = uuid::Uuid::parse_str(&request.get_ref().user_id)
            .map_err(|_| AdminError::InvalidArgument("user_id must be a UUID".into()))?;
        let presence = self.reader.presence(id).await?;
        let user = &presence.user;
        Ok(UserPresence {
            status: Some(to_proto(
                user.id,
                &user.username,
                &user.display_name,
                &presence.status,
            )),
            last_logout_at: presence.last_logout.map(timestamp),
            last_activity_age_seconds: presence.last_activity_age,
            threshold_minutes: u32::from(presence.threshold.minutes()),
            generated_at: Some(timestamp(presence.generated_at)),
            degraded: presence.degraded,
            disabled: presence.disabled,
            recent_events: presence.recent_events.iter().map(login_event).collect(),
        })
    }

    fn settings_message(&self, settings: ActivitySettings) -> ActivitySettingsMessage {
        ActivitySettingsMessage {
            threshold_minutes: u32::from(settings.threshold.minutes()),
            updated_at: settings.updated_at.map(timestamp_from),
            updated_by: settings.updated_by.unwrap_or_default(),
            ping_interval_seconds: settings
                .threshold
                .ping_interval_seconds(self.ping.ping_interval_seconds),
            idle_detection_enabled: settings.idle.enabled,
            idle_after_minutes: u32::from(settings.idle.after.minutes()),
        }
    }

    async fn get_settings(
        &self,
        request: Request<GetActivitySettingsRequest>,
    ) -> Result<ActivitySettingsMessage, AdminError> {
        self.authorize(request.metadata(), &[Role::Admin]).await?;
        Ok(self.settings_message(self.reader.directory.settings().await?))
    }

    async fn update_settings(
        &self,
        request: Request<UpdateActivitySettingsRequest>,
    ) -> Result<ActivitySettingsMessage, AdminError> {
        let caller = self.authorize(request.metadata(), &[Role::Admin]).await?;
        let change = settings_change(request.get_ref())?;
        let settings = self
            .reader
            .directory
            .update_settings(change, caller.user_id)
            .await?;
        if !settings.idle.enabled {
            // Nothing is kept of who was away once detection is off (best
            // effort: without Redis, the entries expire with the threshold
            // and are never read while detection is off).
            if let Err(error) = self.reader.activity.clear_away().await {
                tracing::warn!(%error, "could not clear the away index");
            }
        }
        Ok(self.settings_message(settings))
    }

    async fn watch(
        &self,
        request: Request<WatchUserStatusesRequest>,
    ) -> Result<EventStream, AdminError> {
        // Back-ends (a chat or scheduling service) follow statuses too; their
        // streams end and are capped per account exactly as an admin's.
        let caller = self
            .authorize(request.metadata(), &[Role::Admin, Role::Service])
            .await?;
        let slot = self.watchers.acquire(caller.user_id)?;
        let (events, receiver) = mpsc::channel(self.watch_buffer);
        let (end, ended) = oneshot::channel();
        let feed = Feed {
            hub: self.hub.clone(),
            revocations: self.revocations.clone(),
            caller,
            events,
            stopping: self.stopping.clone(),
            _slot: slot,
        };
        tokio::spawn(async move {
            if let FeedEnd::Refused(error) = feed_watcher(feed).await {
                let _ = end.send(Status::from(error));
            }
        });
        Ok(Box::pin(WatchStream {
            events: receiver,
            ended: Some(ended),
            finished: false,
        }))
    }
}

/// Whether `caller`'s session still lets it watch: its token has not expired
/// and has not been revoked (signed out, or its user disabled). `authorize`
/// checks the same when the stream opens; open streams check again on every
/// sign-out of their user and every `RECHECK_EVERY`. As in `authorize`, a
/// session neither Redis nor PostgreSQL can vouch for ends (fail closed).
async fn still_authorized(
    revocations: &RevocationCheck,
    caller: &Caller,
) -> Result<(), AdminError> {
    if chrono::Utc::now().timestamp() >= caller.expires_at {
        return Err(AdminError::SessionEnded(
            "the access token expired; sign in again",
        ));
    }
    match revocations.ensure_not_revoked(caller).await {
        Ok(()) => Ok(()),
        Err(presence_store::Error::TokenRevoked) => Err(AdminError::SessionEnded(
            "the access token was revoked (signed out or account disabled); sign in again",
        )),
        Err(error) => Err(error.into()),
    }
}

/// How often an open stream checks its session, in case the sign-out
/// announcement was missed (Redis pub/sub does not queue for the absent).
const RECHECK_EVERY: Duration = Duration::from_secs(5);
/// How long one event may wait for room in a watcher's buffer: a client that
/// reads nothing for this long has its stream ended, so its feed does not
/// wait forever.
const SEND_DEADLINE: Duration = Duration::from_secs(10);

type EventStream = Pin<Box<dyn Stream<Item = Result<UserStatusEvent, Status>> + Send>>;

/// What a watcher reads: its feed's events; when the feed ends with an
/// error, that error comes next, ahead of anything still buffered (an ended
/// session is told at once and sees nothing more), and the stream ends.
struct WatchStream {
    events: mpsc::Receiver<UserStatusEvent>,
    /// The error the feed ended with; `None` once the feed ended without one.
    ended: Option<oneshot::Receiver<Status>>,
    finished: bool,
}

impl Stream for WatchStream {
    type Item = Result<UserStatusEvent, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(None);
        }
        if let Some(ended) = &mut this.ended {
            match Pin::new(ended).poll(cx) {
                Poll::Ready(Ok(status)) => {
                    this.finished = true;
                    return Poll::Ready(Some(Err(status)));
                }
                Poll::Ready(Err(_)) => this.ended = None,
                Poll::Pending => {}
            }
        }
        match this.events.poll_recv(cx) {
            Poll::Ready(Some(event)) => Poll::Ready(Some(Ok(event))),
            Poll::Ready(None) => {
                this.finished = true;
                // The feed sends its error before it drops its sender: if
                // the error came in since the look above, it is there now.
                let error = this.ended.as_mut().and_then(|ended| ended.try_recv().ok());
                Poll::Ready(error.map(Err))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// One watcher's feed and what it needs; its slot is freed when it ends.
struct Feed {
    hub: StatusHub,
    revocations: RevocationCheck,
    caller: Caller,
    events: mpsc::Sender<UserStatusEvent>,
    stopping: watch::Receiver<bool>,
    _slot: WatcherSlot,
}

/// Why a feed ended.
enum FeedEnd {
    /// The client went away: there is no one to tell.
    ClientLeft,
    /// The stream ends with this error.
    Refused(AdminError),
}

impl From<AdminError> for FeedEnd {
    fn from(error: AdminError) -> Self {
        FeedEnd::Refused(error)
    }
}

const STOPPING: AdminError =
    AdminError::StreamInterrupted("the server is stopping; reconnect to go on watching");

impl Feed {
    /// Queues one event, waiting at most `SEND_DEADLINE` for room.
    async fn deliver(&mut self, event: UserStatusEvent) -> Result<(), FeedEnd> {
        tokio::select! {
            sent = self.events.send_timeout(event, SEND_DEADLINE) => match sent {
                Ok(()) => Ok(()),
                Err(SendTimeoutError::Closed(_)) => Err(FeedEnd::ClientLeft),
                Err(SendTimeoutError::Timeout(_)) => {
                    tracing::info!(user_id = %self.caller.user_id, "a status watcher stopped reading; ending its stream");
                    Err(AdminError::StreamInterrupted(
                        "the status stream was not read for too long; reconnect",
                    )
                    .into())
                }
            },
            _ = self.stopping.wait_for(|stopping| *stopping) => Err(STOPPING.into()),
        }
    }
}

/// The fields of an update, each parsed; at least one is required.
fn settings_change(request: &UpdateActivitySettingsRequest) -> Result<SettingsChange, AdminError> {
    let invalid = |message: String| AdminError::InvalidArgument(message);
    let change = SettingsChange {
        threshold: request
            .threshold_minutes
            .map(|minutes| ThresholdMinutes::new(i64::from(minutes)))
            .transpose()
            .map_err(|error| invalid(error.to_string()))?,
        idle_enabled: request.idle_detection_enabled,
        idle_after: request
            .idle_after_minutes
            .map(|minutes| IdleMinutes::new(i64::from(minutes)))
            .transpose()
            .map_err(|error| invalid(error.to_string()))?,
    };
    if change == SettingsChange::default() {
        return Err(invalid(
            "give at least one of threshold_minutes (1 to 1440), idle_detection_enabled, idle_after_minutes (1 to 240)".into(),
        ));
    }
    Ok(change)
}

fn now_timestamp() -> Option<prost_types::Timestamp> {
    Some(timestamp_from(chrono::Utc::now()))
}

fn change(status: UserStatus) -> UserStatusEvent {
    UserStatusEvent {
        status: Some(status),
        occurred_at: now_timestamp(),
        ..Default::default()
    }
}

/// Sends the online set, then the completion marker.
async fn send_snapshot(feed: &mut Feed) -> Result<(), FeedEnd> {
    for status in feed.hub.snapshot() {
        let event = UserStatusEvent {
            snapshot: true,
            ..change(status)
        };
        feed.deliver(event).await?;
    }
    let complete = UserStatusEvent {
        snapshot_complete: true,
        occurred_at: now_timestamp(),
        ..Default::default()
    };
    feed.deliver(complete).await
}

/// One watcher's feed: snapshot, then changes; a resync when it lags. Ends
/// when the client goes away or stops reading, when the server stops, and
/// when the caller's session ends (token expired or revoked).
async fn feed_watcher(mut feed: Feed) -> FeedEnd {
    let Err(end) = follow_changes(&mut feed).await;
    end
}

async fn follow_changes(feed: &mut Feed) -> Result<std::convert::Infallible, FeedEnd> {
    let mut changes = feed.hub.subscribe();
    let mut sign_outs = feed.hub.sign_outs();
    let mut recheck = tokio::time::interval(RECHECK_EVERY);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    recheck.tick().await;
    let seconds_left = (feed.caller.expires_at - chrono::Utc::now().timestamp()).max(0);
    let expiry = tokio::time::sleep(Duration::from_secs(seconds_left as u64));
    tokio::pin!(expiry);
    send_snapshot(feed).await?;
    loop {
        // `None`: time to check the session again.
        let received = tokio::select! {
            received = changes.recv() => Some(received),
            () = feed.events.closed() => return Err(FeedEnd::ClientLeft),
            _ = feed.stopping.wait_for(|stopping| *stopping) => return Err(STOPPING.into()),
            () = &mut expiry => {
                return Err(AdminError::SessionEnded("the access token expired; sign in again").into());
            }
            _ = recheck.tick() => None,
            // A sign-out of this caller (maybe of another session of theirs),
            // or some missed: is this session still valid?
            signed_out = sign_outs.recv() => match signed_out {
                Ok(user_id) if user_id != feed.caller.user_id => continue,
                _ => None,
            },
        };
        let Some(received) = received else {
            still_authorized(&feed.revocations, &feed.caller).await?;
            continue;
        };
        match received {
            Ok(status) => feed.deliver(change(status)).await?,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::info!(missed, "a status watcher fell behind; resynchronising it");
                changes = feed.hub.subscribe();
                let resync = UserStatusEvent {
                    resync: true,
                    occurred_at: now_timestamp(),
                    ..Default::default()
                };
                feed.deliver(resync).await?;
                send_snapshot(feed).await?;
            }
            Err(broadcast::error::RecvError::Closed) => return Err(FeedEnd::ClientLeft),
        }
    }
}

#[tonic::async_trait]
impl AdminService for AdminHandler {
    async fn list_user_statuses(
        &self,
        request: Request<ListUserStatusesRequest>,
    ) -> Result<Response<ListUserStatusesResponse>, Status> {
        Ok(Response::new(self.list(request).await?))
    }

    async fn batch_get_user_statuses(
        &self,
        request: Request<BatchGetUserStatusesRequest>,
    ) -> Result<Response<BatchGetUserStatusesResponse>, Status> {
        Ok(Response::new(self.batch(request).await?))
    }

    type WatchUserStatusesStream = EventStream;

    async fn watch_user_statuses(
        &self,
        request: Request<WatchUserStatusesRequest>,
    ) -> Result<Response<Self::WatchUserStatusesStream>, Status> {
        Ok(Response::new(self.watch(request).await?))
    }

    async fn get_user_presence(
        &self,
        request: Request<GetUserPresenceRequest>,
    ) -> Result<Response<UserPresence>, Status> {
        Ok(Response::new(self.presence(request).await?))
    }

    async fn get_online_history(
        &self,
        request: Request<GetOnlineHistoryRequest>,
    ) -> Result<Response<GetOnlineHistoryResponse>, Status> {
        Ok(Response::new(self.online_history(request).await?))
    }

    async fn get_activity_settings(
        &self,
        request: Request<GetActivitySettingsRequest>,
    ) -> Result<Response<ActivitySettingsMessage>, Status> {
        Ok(Response::new(self.get_settings(request).await?))
    }

    async fn update_activity_settings(
        &self,
        request: Request<UpdateActivitySettingsRequest>,
    ) -> Result<Response<ActivitySettingsMessage>, Status> {
        Ok(Response::new(self.update_settings(request).await?))
    }
}
