//! The gRPC handlers of `presence.admin.v1.AdminService`: authorise the
//! caller, parse the request into domain values, ask the listing, settings or
//! watch code, and shape the answer. `AdminError` chooses every status.

use std::pin::Pin;

use futures::Stream;
use presence_core::auth::authenticate;
use presence_core::config::PingArgs;
use presence_core::proto::admin::admin_service_server::AdminService;
use presence_core::proto::admin::{
    ActivitySettings as ActivitySettingsMessage, BatchGetUserStatusesRequest,
    BatchGetUserStatusesResponse, GetActivitySettingsRequest, ListUserStatusesRequest,
    ListUserStatusesResponse, StatusFilter, UpdateActivitySettingsRequest, UserStatus,
    UserStatusEvent, WatchUserStatusesRequest,
};
use presence_core::revocation::RevocationCheck;
use presence_core::settings::ActivitySettings;
use presence_core::threshold::ThresholdMinutes;
use presence_core::token::{Caller, Role, TokenVerifier};
use presence_core::{timestamp, timestamp_from};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use crate::error::AdminError;
use crate::listing::StatusReader;
use crate::page_token::PageTokens;
use crate::status::to_proto;
use crate::store::ListFilter;
use crate::watch::StatusHub;

#[derive(Clone)]
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
                "this method needs an admin token",
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
        let after = self
            .page_tokens
            .read(&request.page_token, filter_code as i32)?;
        let listing = self.reader.list(filter, request.page_size, after).await?;
        let next_page_token = listing
            .continue_after
            .as_deref()
            .map(|after| self.page_tokens.issue(filter_code as i32, after))
            .unwrap_or_default();
        Ok(ListUserStatusesResponse {
            statuses: listing
                .statuses
                .iter()
                .map(|(row, status)| to_proto(row.id, &row.username, &row.display_name, status))
                .collect(),
            next_page_token,
            total_count: listing.total,
            online_count: listing.online,
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

    fn settings_message(&self, settings: ActivitySettings) -> ActivitySettingsMessage {
        ActivitySettingsMessage {
            threshold_minutes: u32::from(settings.threshold.minutes()),
            updated_at: settings.updated_at.map(timestamp_from),
            updated_by: settings.updated_by.unwrap_or_default(),
            ping_interval_seconds: settings
                .threshold
                .ping_interval_seconds(self.ping.ping_interval_seconds),
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
        let minutes = request.get_ref().threshold_minutes.ok_or_else(|| {
            AdminError::InvalidArgument(
                "threshold_minutes is required: a whole number of minutes from 1 to 1440".into(),
            )
        })?;
        let threshold = ThresholdMinutes::new(i64::from(minutes))
            .map_err(|error| AdminError::InvalidArgument(error.to_string()))?;
        let settings = self
            .reader
            .directory
            .update_threshold(threshold, caller.user_id)
            .await?;
        Ok(self.settings_message(settings))
    }

    async fn watch(
        &self,
        request: Request<WatchUserStatusesRequest>,
    ) -> Result<EventStream, AdminError> {
        self.authorize(request.metadata(), &[Role::Admin]).await?;
        let (events, receiver) = mpsc::channel(self.watch_buffer);
        tokio::spawn(feed_watcher(
            self.hub.clone(),
            events,
            self.stopping.clone(),
        ));
        Ok(Box::pin(ReceiverStream::new(receiver)))
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<UserStatusEvent, Status>> + Send>>;

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
async fn send_snapshot(
    hub: &StatusHub,
    events: &mpsc::Sender<Result<UserStatusEvent, Status>>,
) -> Result<(), ()> {
    for status in hub.snapshot() {
        let event = UserStatusEvent {
            snapshot: true,
            ..change(status)
        };
        events.send(Ok(event)).await.map_err(|_| ())?;
    }
    let complete = UserStatusEvent {
        snapshot_complete: true,
        occurred_at: now_timestamp(),
        ..Default::default()
    };
    events.send(Ok(complete)).await.map_err(|_| ())
}

/// One watcher's feed: snapshot, then changes; a resync when it lags. Ends
/// when the client goes away or the server stops.
async fn feed_watcher(
    hub: StatusHub,
    events: mpsc::Sender<Result<UserStatusEvent, Status>>,
    mut stopping: watch::Receiver<bool>,
) {
    let mut changes = hub.subscribe();
    if send_snapshot(&hub, &events).await.is_err() {
        return;
    }
    loop {
        let received = tokio::select! {
            received = changes.recv() => received,
            () = events.closed() => return,
            _ = stopping.wait_for(|stopping| *stopping) => return,
        };
        let delivered = match received {
            Ok(status) => events.send(Ok(change(status))).await.is_ok(),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::info!(missed, "a status watcher fell behind; resynchronising it");
                changes = hub.subscribe();
                let resync = UserStatusEvent {
                    resync: true,
                    occurred_at: now_timestamp(),
                    ..Default::default()
                };
                events.send(Ok(resync)).await.is_ok() && send_snapshot(&hub, &events).await.is_ok()
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if !delivered {
            return;
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
