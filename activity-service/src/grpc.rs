//! The gRPC handlers of `presence.activity.v1.ActivityService`. Each one
//! authenticates, parses its request into domain values, calls the store, and
//! lets `ActivityError` choose the status.

use std::net::IpAddr;
use std::time::Duration;

use presence_core::auth::authenticate;
use presence_core::proto::activity::activity_service_server::ActivityService;
use presence_core::proto::activity::{
    LoginRequest, LoginResponse, LogoutRequest, LogoutResponse, PingRequest, PingResponse,
    RecordActivityRequest, RecordActivityResponse,
};
use presence_core::settings::ThresholdWatch;
use presence_core::timestamp;
use presence_core::token::{Caller, Role, TokenIssuer, TokenVerifier};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::error::ActivityError;
use crate::password;
use crate::store::{Accounts, ActivityStore, ClientInfo};

const MAX_USERNAME_CHARS: usize = 64;
const MAX_PASSWORD_BYTES: usize = 1024;
const MAX_USER_AGENT_CHARS: usize = 512;
/// How long a logout row is retried while PostgreSQL is unreachable: the
/// logout itself already took effect in Redis; the row must not be lost.
const LOGOUT_ROW_RETRY_FOR: Duration = Duration::from_secs(120);

/// Sign-in throttling limits.
#[derive(Clone, Copy, Debug)]
pub struct LoginThrottle {
    pub max_failures_per_user: i64,
    pub max_failures_per_client: i64,
    pub window_seconds: i64,
}

#[derive(Clone)]
pub struct ActivityHandler {
    pub store: ActivityStore,
    pub accounts: Accounts,
    pub verifier: TokenVerifier,
    pub issuer: TokenIssuer,
    pub threshold: ThresholdWatch,
    pub ping_interval_seconds: u32,
    pub throttle: LoginThrottle,
    pub trust_forwarded_for: bool,
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Refuses a password that could never be valid before any work is done.
pub fn check_password_shape(password: &str) -> Result<(), ActivityError> {
    if password.is_empty() || password.len() > MAX_PASSWORD_BYTES {
        return Err(ActivityError::InvalidArgument(format!(
            "password must be 1 to {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

fn check_username_shape(username: &str) -> Result<(), ActivityError> {
    let chars = username.chars().count();
    if chars == 0 || chars > MAX_USERNAME_CHARS || username.trim() != username {
        return Err(ActivityError::InvalidArgument(format!(
            "username must be 1 to {MAX_USERNAME_CHARS} characters without surrounding spaces"
        )));
    }
    Ok(())
}

impl ActivityHandler {
    fn client_info<T>(&self, request: &Request<T>) -> ClientInfo {
        let metadata = request.metadata();
        let forwarded = self
            .trust_forwarded_for
            .then(|| forwarded_ip(metadata))
            .flatten();
        let ip = forwarded.or_else(|| request.remote_addr().map(|address| address.ip()));
        let user_agent = metadata
            .get("x-user-agent")
            .or_else(|| metadata.get("user-agent"))
            .and_then(|value| value.to_str().ok())
            .map(|agent| agent.chars().take(MAX_USER_AGENT_CHARS).collect());
        ClientInfo { ip, user_agent }
    }

    fn caller(&self, metadata: &MetadataMap) -> Result<Caller, ActivityError> {
        Ok(authenticate(&self.verifier, metadata)?)
    }

    async fn login(&self, request: Request<LoginRequest>) -> Result<LoginResponse, ActivityError> {
        let client = self.client_info(&request);
        let LoginRequest { username, password } = request.into_inner();
        check_username_shape(&username)?;
        check_password_shape(&password)?;

        let (user_failures, client_failures) = self
            .accounts
            .recent_failures(&username, &client, self.throttle.window_seconds)
            .await?;
        if user_failures >= self.throttle.max_failures_per_user
            || client_failures >= self.throttle.max_failures_per_client
        {
            self.accounts
                .record_login_failure(None, &username, "throttled", &client)
                .await?;
            return Err(ActivityError::Throttled);
        }

        let account = self.accounts.find_by_username(&username).await?;
        let stored_hash = account
            .as_ref()
            .map(|account| account.password_hash.clone());
        let password_matches = password::verify(password, stored_hash).await?;
        let refusal = match &account {
            None => Some("unknown_user"),
            Some(_) if !password_matches => Some("wrong_password"),
            Some(account) if account.disabled => Some("account_disabled"),
            Some(account) if account.role == Role::Service => Some("service_account"),
            Some(_) => None,
        };
        if let Some(reason) = refusal {
            let user_id = account.as_ref().map(|account| account.id);
            self.accounts
                .record_login_failure(user_id, &username, reason, &client)
                .await?;
            return Err(ActivityError::BadCredentials(reason));
        }
        let account = account.expect("refusal covers the missing account");

        let now = now();
        let role = account.role.0;
        let issued = self.issuer.issue(account.id, role, now)?;
        self.accounts
            .record_login_success(account.id, &username, &client)
            .await?;
        self.store.record_login(account.id, now).await;
        tracing::info!(user_id = %account.id, role = role.as_str(), "signed in");
        Ok(LoginResponse {
            access_token: issued.token,
            expires_at: Some(timestamp(issued.expires_at)),
            user_id: account.id.to_string(),
            role: role.as_str().to_owned(),
            display_name: account.display_name,
        })
    }

    async fn ping(&self, request: Request<PingRequest>) -> Result<PingResponse, ActivityError> {
        let caller = self.caller(request.metadata())?;
        if caller.role == Role::Service {
            return Err(ActivityError::PermissionDenied(
                "service tokens record activity with RecordActivity",
            ));
        }
        let threshold = self.threshold.current();
        let now = now();
        self.store
            .record_activity(caller.user_id, &caller, now, threshold.key_ttl())
            .await?;
        Ok(PingResponse {
            server_time: Some(timestamp(now)),
            ping_interval_seconds: threshold.ping_interval_seconds(self.ping_interval_seconds),
            threshold_minutes: u32::from(threshold.minutes()),
        })
    }

    async fn logout(
        &self,
        request: Request<LogoutRequest>,
    ) -> Result<LogoutResponse, ActivityError> {
        let caller = self.caller(request.metadata())?;
        let client = self.client_info(&request);
        let now = now();
        let signed_out = self
            .store
            .sign_out(&caller, now, self.threshold.current().key_ttl())
            .await;
        match signed_out {
            // Already signed out with this token: nothing more to record.
            Ok(false) => return Ok(LogoutResponse {}),
            Ok(true) => {}
            // Redis is down: still record the logout, and with it the
            // revocation, so the login_history fallback shows the user
            // offline, admin calls refuse the token at once and Redis gets
            // the revocation when it is back; the client retries.
            Err(error) => {
                self.record_logout_row(caller, now, client).await;
                return Err(error);
            }
        }
        let user_id = caller.user_id;
        self.record_logout_row(caller, now, client).await;
        tracing::info!(%user_id, "signed out");
        Ok(LogoutResponse {})
    }

    /// Writes the logout row (with the revoked token); if PostgreSQL is
    /// unreachable, keeps retrying in the background rather than losing it
    /// (the row carries the logout time).
    async fn record_logout_row(&self, caller: Caller, at: i64, client: ClientInfo) {
        if self
            .accounts
            .record_logout(&caller, at, &client)
            .await
            .is_ok()
        {
            return;
        }
        let accounts = self.accounts.clone();
        tokio::spawn(async move {
            let user_id = caller.user_id;
            let deadline = tokio::time::Instant::now() + LOGOUT_ROW_RETRY_FOR;
            let mut delay = Duration::from_millis(250);
            while tokio::time::Instant::now() < deadline {
                tokio::time::sleep(delay).await;
                match accounts.record_logout(&caller, at, &client).await {
                    Ok(()) => return,
                    Err(error) => {
                        tracing::warn!(%error, %user_id, "logout row not written yet; retrying")
                    }
                }
                delay = (delay * 2).min(Duration::from_secs(10));
            }
            tracing::error!(%user_id, at, "gave up writing a logout row");
        });
    }

    async fn record_activity(
        &self,
        request: Request<RecordActivityRequest>,
    ) -> Result<RecordActivityResponse, ActivityError> {
        let caller = self.caller(request.metadata())?;
        if caller.role != Role::Service {
            return Err(ActivityError::PermissionDenied(
                "RecordActivity needs a service token",
            ));
        }
        let user_id = Uuid::parse_str(&request.get_ref().user_id)
            .map_err(|_| ActivityError::InvalidArgument("user_id must be a UUID".into()))?;
        if !self.accounts.user_exists(user_id).await? {
            return Err(ActivityError::NotFound(format!(
                "no user with id {user_id}"
            )));
        }
        let now = now();
        self.store
            .record_activity(user_id, &caller, now, self.threshold.current().key_ttl())
            .await?;
        Ok(RecordActivityResponse {
            server_time: Some(timestamp(now)),
        })
    }
}

/// The first address of `x-forwarded-for`: the client as the proxy saw it.
fn forwarded_ip(metadata: &MetadataMap) -> Option<IpAddr> {
    metadata
        .get("x-forwarded-for")?
        .to_str()
        .ok()?
        .split(',')
        .next()?
        .trim()
        .parse()
        .ok()
}

#[tonic::async_trait]
impl ActivityService for ActivityHandler {
    async fn login(
        &self,
        request: Request<LoginRequest>,
    ) -> Result<Response<LoginResponse>, Status> {
        Ok(Response::new(ActivityHandler::login(self, request).await?))
    }

    async fn ping(&self, request: Request<PingRequest>) -> Result<Response<PingResponse>, Status> {
        Ok(Response::new(ActivityHandler::ping(self, request).await?))
    }

    async fn logout(
        &self,
        request: Request<LogoutRequest>,
    ) -> Result<Response<LogoutResponse>, Status> {
        Ok(Response::new(ActivityHandler::logout(self, request).await?))
    }

    async fn record_activity(
        &self,
        request: Request<RecordActivityRequest>,
    ) -> Result<Response<RecordActivityResponse>, Status> {
        Ok(Response::new(
            ActivityHandler::record_activity(self, request).await?,
        ))
    }
}
