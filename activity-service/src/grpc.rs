//! The gRPC handlers of `presence.activity.v1.ActivityService`. Each one
//! authenticates, parses its request into domain values, calls the store, and
//! lets `ActivityError` choose the status.

use std::sync::Arc;
use std::time::Duration;

use presence_core::auth::authenticate;
use presence_core::forwarded::{ForwardedHeader, TrustedProxies};
use presence_core::token::{Caller, Role, TokenIssuer, TokenVerifier};
use presence_proto::activity::activity_service_server::ActivityService;
use presence_proto::activity::{
    GetMyPresenceRequest, LoginEvent, LoginEventKind, LoginRequest, LoginResponse, LogoutRequest,
    LogoutResponse, MyBrowser, MyPresence, MyRetention, PingRequest, PingResponse,
    RecordActivityRequest, RecordActivityResponse,
};
use presence_proto::{timestamp, timestamp_from};
use presence_store::revocation::RedisVerdict;
use presence_store::settings::ThresholdWatch;
use tokio::sync::Semaphore;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::browser::BrowserId;
use crate::error::ActivityError;
use crate::password::{Admission, PasswordChecks};
use presence_store::login_history::EventRow;

use crate::store::{Account, Accounts, ActivityStore, ClientInfo, Input, Ping, SignOut};
use crate::throttle::{LoginThrottle, Reservation, Reserved};

const MAX_USERNAME_CHARS: usize = 64;
const MAX_PASSWORD_BYTES: usize = 1024;
const MAX_USER_AGENT_CHARS: usize = 512;
/// How long a logout row is retried while PostgreSQL is unreachable: the
/// logout itself already took effect in Redis; the row must not be lost.
const LOGOUT_ROW_RETRY_FOR: Duration = Duration::from_secs(120);
/// Logout rows retried at once while PostgreSQL is unreachable (a few
/// hundred bytes each); beyond, a row is given up at once, with an error in
/// the log (its logout already took effect in Redis).
pub const MAX_PENDING_LOGOUT_ROWS: usize = 10_000;
/// How many login_history events `GetMyPresence` shows.
pub const MY_RECENT_EVENTS: i64 = 20;
/// How many characters of a browser's id name it to its user.
const BROWSER_LABEL_CHARS: usize = 8;

#[derive(Debug, Clone)]
pub struct ActivityHandler {
    pub store: ActivityStore,
    pub accounts: Accounts,
    pub verifier: TokenVerifier,
    pub issuer: TokenIssuer,
    pub threshold: ThresholdWatch,
    pub ping_interval_seconds: u32,
    pub throttle: LoginThrottle,
    pub password_checks: PasswordChecks,
    pub trusted_proxies: TrustedProxies,
    /// Places for logout rows being retried (`MAX_PENDING_LOGOUT_ROWS`).
    pub pending_logout_rows: Arc<Semaphore>,
    /// Days login_history rows are kept, told to the people they are about.
    pub login_history_retention_days: i32,
}

/// What checking a username and password found.
enum Verdict {
    Accepted(Account),
    /// The reason is recorded in login_history, never told to the client.
    Refused {
        user_id: Option<Uuid>,
        reason: &'static str,
    },
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// How long a ping that reported input vouches for its browser: two ping
/// intervals and some slack, so one lost or late ping changes nothing.
fn input_counts_for(ping_interval_seconds: u32) -> i64 {
    2 * i64::from(ping_interval_seconds) + 10
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
        let ip = request
            .remote_addr()
            .map(|peer| forwarded_ip(&self.trusted_proxies, peer.ip(), metadata));
        // The browser's own User-Agent, which says which browser and system
        // signed in; a gRPC-Web library's `x-user-agent` names only itself.
        let user_agent = metadata
            .get("user-agent")
            .or_else(|| metadata.get("x-user-agent"))
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

        // A place among the password checks first: a flood is refused here,
        // in memory, before it costs the database anything.
        let admission = self.password_checks.admit()?;
        // Counted as a failure before the password is checked (see `throttle`).
        let reserved = match self.throttle.reserve(&username, client.ip).await? {
            Reservation::Granted(reserved) => reserved,
            Reservation::Refused(refusal) => {
                self.accounts
                    .record_login_failure(None, &username, "throttled", &client)
                    .await?;
                return Err(ActivityError::Throttled(refusal.as_str()));
            }
        };
        let checked = self.check_credentials(admission, &username, password).await;
        let account = match checked {
            Ok(Verdict::Accepted(account)) => account,
            Ok(Verdict::Refused { user_id, reason }) => {
                self.throttle.failed(reserved);
                self.accounts
                    .record_login_failure(user_id, &username, reason, &client)
                    .await?;
                return Err(ActivityError::BadCredentials(reason));
            }
            // Busy, or the database failed: the password was never judged.
            Err(error) => {
                self.throttle.release(reserved).await;
                return Err(error);
            }
        };
        self.sign_in(account, &username, &client, reserved).await
    }

    /// Whether `password` signs `username` in. Waits for its turn to check
    /// (or is refused as busy); never judges without checking a hash.
    async fn check_credentials(
        &self,
        admission: Admission,
        username: &str,
        password: String,
    ) -> Result<Verdict, ActivityError> {
        let account = self.accounts.find_by_username(username).await?;
        let stored_hash = account
            .as_ref()
            .map(|account| account.password_hash.clone());
        let password_matches = admission.verify(password, stored_hash).await?;
        let Some(account) = account else {
            return Ok(Verdict::Refused {
                user_id: None,
                reason: "unknown_user",
            });
        };
        let reason = if !password_matches {
            "wrong_password"
        } else if account.disabled {
            "account_disabled"
        } else if account.role == Role::Service {
            "service_account"
        } else {
            return Ok(Verdict::Accepted(account));
        };
        Ok(Verdict::Refused {
            user_id: Some(account.id),
            reason,
        })
    }

    async fn sign_in(
        &self,
        account: Account,
        username: &str,
        client: &ClientInfo,
        reserved: Reserved,
    ) -> Result<LoginResponse, ActivityError> {
        let now = now();
        let role = account.role;
        let issued = self.issuer.issue(account.id, role, now)?;
        let recorded = self
            .accounts
            .record_login_success(account.id, username, client)
            .await;
        if let Err(error) = recorded {
            self.throttle.release(reserved).await;
            return Err(error);
        }
        self.throttle.succeeded(reserved).await;
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
        let PingRequest { browser_id, idle } = request.into_inner();
        let browser = BrowserId::parse(browser_id)?;
        let settings = self.threshold.settings();
        let idle_delay = settings.idle.delay();
        let input = match (idle_delay, idle) {
            (None, _) => Input::Off,
            (Some(_), None) => Input::Unknown,
            (Some(_), Some(true)) => Input::Idle,
            (Some(_), Some(false)) => Input::Recent,
        };
        let now = now();
        let ping_interval = settings
            .threshold
            .ping_interval_seconds(self.ping_interval_seconds);
        self.store
            .record_activity(Ping {
                user_id: caller.user_id,
                caller: &caller,
                browser: browser.as_ref(),
                input,
                input_counts_for: input_counts_for(ping_interval),
                now,
                threshold: settings.threshold,
            })
            .await?;
        Ok(PingResponse {
            server_time: Some(timestamp(now)),
            ping_interval_seconds: ping_interval,
            threshold_minutes: u32::from(settings.threshold.minutes()),
            idle_after_minutes: idle_delay.map_or(0, |delay| u32::from(delay.minutes())),
        })
    }

    async fn logout(
        &self,
        request: Request<LogoutRequest>,
    ) -> Result<LogoutResponse, ActivityError> {
        let caller = self.caller(request.metadata())?;
        let client = self.client_info(&request);
        let browser = BrowserId::parse(request.into_inner().browser_id)?;
        let now = now();
        let signed_out = self
            .store
            .sign_out(&caller, browser.as_ref(), now, self.threshold.current())
            .await;
        let still_online = match signed_out {
            // Already signed out with this token: nothing more to record.
            Ok(SignOut::AlreadySignedOut) => return Ok(LogoutResponse {}),
            Ok(SignOut::Offline) => false,
            Ok(SignOut::StillOnline) => true,
            // Redis is down: still record the logout, and with it the
            // revocation, so the login_history fallback shows the user
            // offline, admin calls refuse the token at once and Redis gets
            // the revocation when it is back; the client retries.
            Err(error) => {
                self.record_logout_row(caller, now, client).await;
                return Err(error);
            }
        };
        let user_id = caller.user_id;
        self.record_logout_row(caller, now, client).await;
        tracing::info!(%user_id, still_online, "signed out");
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
        let Ok(place) = self.pending_logout_rows.clone().try_acquire_owned() else {
            tracing::error!(user_id = %caller.user_id, at, "too many logout rows waiting for PostgreSQL; this one is given up");
            return;
        };
        let accounts = self.accounts.clone();
        tokio::spawn(async move {
            let _place = place;
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
        let settings = self.threshold.settings();
        let ping_interval = settings
            .threshold
            .ping_interval_seconds(self.ping_interval_seconds);
        self.store
            .record_activity(Ping {
                user_id,
                caller: &caller,
                browser: None,
                // A service saw the user act: present, not away.
                input: if settings.idle.enabled {
                    Input::Unknown
                } else {
                    Input::Off
                },
                input_counts_for: input_counts_for(ping_interval),
                now,
                threshold: settings.threshold,
            })
            .await?;
        Ok(RecordActivityResponse {
            server_time: Some(timestamp(now)),
        })
    }

    /// The caller's own records. The user is the token's subject, never
    /// anything the request says. Redis is read in one round trip, with the
    /// token's revocation; when Redis cannot answer, the revocation is
    /// checked in PostgreSQL and the answer is degraded.
    async fn get_my_presence(
        &self,
        request: Request<GetMyPresenceRequest>,
    ) -> Result<MyPresence, ActivityError> {
        let caller = self.caller(request.metadata())?;
        if caller.role == Role::Service {
            return Err(ActivityError::PermissionDenied(
                "a service token has no presence of its own",
            ));
        }
        let settings = self.threshold.settings();
        let threshold = settings.threshold;
        let idle_delay = settings.idle.delay();
        let now = now();
        let (activity, degraded) = match self
            .store
            .own_activity(&caller, now - threshold.seconds())
            .await
        {
            Ok((RedisVerdict::Revoked, _)) => {
                return Err(presence_store::Error::TokenRevoked.into());
            }
            Ok((RedisVerdict::NotRevoked, activity)) => (activity, false),
            Ok((RedisVerdict::Unknown, activity)) => {
                self.ensure_not_revoked_in_postgres(&caller).await?;
                (activity, false)
            }
            Err(error) => {
                tracing::warn!(%error, "own presence read from PostgreSQL alone: Redis is unavailable");
                self.ensure_not_revoked_in_postgres(&caller).await?;
                (Default::default(), true)
            }
        };
        let events = self
            .accounts
            .recent_events(caller.user_id, MY_RECENT_EVENTS)
            .await?;
        Ok(MyPresence {
            user_id: caller.user_id.to_string(),
            generated_at: Some(timestamp(now)),
            last_activity: activity.last_activity.map(timestamp),
            browsers: activity
                .browsers
                .into_iter()
                .map(|(id, at)| MyBrowser {
                    label: id.chars().take(BROWSER_LABEL_CHARS).collect(),
                    last_activity: Some(timestamp(at)),
                })
                .collect(),
            recent_events: events.iter().map(login_event).collect(),
            retention: Some(MyRetention {
                activity_seconds: u32::try_from(threshold.key_ttl().as_secs()).unwrap_or(u32::MAX),
                threshold_minutes: u32::from(threshold.minutes()),
                login_history_days: u32::try_from(self.login_history_retention_days)
                    .unwrap_or_default(),
            }),
            degraded,
            idle_after_minutes: idle_delay.map_or(0, |delay| u32::from(delay.minutes())),
            away: idle_delay.is_some() && activity.away,
        })
    }

    async fn ensure_not_revoked_in_postgres(&self, caller: &Caller) -> Result<(), ActivityError> {
        if self.accounts.is_revoked(caller).await? {
            return Err(presence_store::Error::TokenRevoked.into());
        }
        Ok(())
    }
}

/// A login_history row as the contract shows it; an event the contract
/// does not know (a kind added to the table later) is UNSPECIFIED.
fn login_event(row: &EventRow) -> LoginEvent {
    let kind = match row.event.as_str() {
        "login_success" => LoginEventKind::LoginSuccess,
        "login_failure" => LoginEventKind::LoginFailure,
        "logout" => LoginEventKind::Logout,
        _ => LoginEventKind::Unspecified,
    };
    LoginEvent {
        kind: kind as i32,
        occurred_at: Some(timestamp_from(row.occurred_at)),
        failure_reason: row.failure_reason.clone().unwrap_or_default(),
        client_address: row.client_address.clone().unwrap_or_default(),
        user_agent: row.user_agent.clone().unwrap_or_default(),
    }
}

/// The client of a call from `peer`: the address in `x-forwarded-for` when
/// `peer` is a trusted proxy (the gateway sends exactly one), otherwise the
/// peer itself.
fn forwarded_ip(
    trusted: &TrustedProxies,
    peer: std::net::IpAddr,
    metadata: &MetadataMap,
) -> std::net::IpAddr {
    let header = ForwardedHeader::XForwardedFor;
    let values = metadata
        .get_all(header.name())
        .iter()
        .map(|value| value.as_encoded_bytes());
    trusted.client(peer, header, values)
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

    async fn get_my_presence(
        &self,
        request: Request<GetMyPresenceRequest>,
    ) -> Result<Response<MyPresence>, Status> {
        Ok(Response::new(
            ActivityHandler::get_my_presence(self, request).await?,
        ))
    }
}
