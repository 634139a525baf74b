//! Request metrics and access logs, recorded where a call ends: when the
//! response body delivers its gRPC trailers (or the headers carry the status
//! of an immediate error). Exposed at /metrics by `prometheus-client`, which
//! escapes what it writes. Every series is labelled by a method the contract
//! knows (`contract`) or `unknown`, and by a status code: their number is
//! bounded, whatever paths clients make up. The endpoints of each upstream
//! are one gauge per upstream (`activity`, `admin`), never per address.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::server::ConnectionGauges;

/// Latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// The label of a call whose path is no method of the contract.
pub const UNKNOWN_METHOD: &str = "unknown";

/// The content type of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    method: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    upstream: &'static str,
}

type Durations = Family<MethodLabels, Histogram, fn() -> Histogram>;

#[derive(Debug, Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    requests: Family<CallLabels, Counter>,
    durations: Durations,
    connections: ConnectionGauges,
    endpoints: Family<UpstreamLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let requests = Family::<CallLabels, Counter>::default();
        let durations: Durations = Family::new_with_constructor(|| Histogram::new(BUCKETS));
        let mut registry = Registry::default();
        // The `_total` suffix of a counter is the encoder's to add.
        registry.register(
            "presence_gateway_requests",
            "gRPC calls through the gateway by method and status code.",
            requests.clone(),
        );
        registry.register(
            "presence_gateway_request_duration_seconds",
            "Time from request to the end of the response.",
            durations.clone(),
        );
        let connections = ConnectionGauges::default();
        registry.register(
            "presence_gateway_connections_open",
            "Client connections open on the gRPC-Web listener (at most PRESENCE_MAX_CONNECTIONS)",
            connections.open.clone(),
        );
        registry.register(
            "presence_gateway_connections_parked",
            "Of those, HTTP/1.1 connections parked between two requests (holding no buffers)",
            connections.parked.clone(),
        );
        let endpoints = Family::<UpstreamLabels, Gauge>::default();
        registry.register(
            "presence_gateway_upstream_endpoints",
            "Addresses each upstream's host name resolves to, each with its own connections \
             (at most 256 per upstream)",
            endpoints.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry,
                requests,
                durations,
                connections,
                endpoints,
            }),
        }
    }
}

impl Metrics {
    /// Counts one call of `method` (a known method's path, or
    /// [`UNKNOWN_METHOD`]) that ended with `code` after `seconds`.
    pub fn record(&self, method: &'static str, code: i32, seconds: f64) {
        self.inner
            .requests
            .get_or_create(&CallLabels {
                method,
                code: code_name(code),
            })
            .inc();
        self.inner
            .durations
            .get_or_create(&MethodLabels { method })
            .observe(seconds);
    }

    /// The gauges the gRPC-Web listener reports its connections to.
    pub fn connections(&self) -> ConnectionGauges {
        self.inner.connections.clone()
    }

    /// The gauge of `upstream`'s endpoints (`activity` or `admin`).
    pub fn upstream_endpoints(&self, upstream: &'static str) -> Gauge {
        self.inner
            .endpoints
            .get_or_create(&UpstreamLabels { upstream })
            .clone()
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.inner.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

pub fn code_name(code: i32) -> &'static str {
    match tonic::Code::from_i32(code) {
        tonic::Code::Ok => "OK",
        tonic::Code::Cancelled => "CANCELLED",
        tonic::Code::Unknown => "UNKNOWN",
        tonic::Code::InvalidArgument => "INVALID_ARGUMENT",
        tonic::Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        tonic::Code::NotFound => "NOT_FOUND",
        tonic::Code::AlreadyExists => "ALREADY_EXISTS",
        tonic::Code::PermissionDenied => "PERMISSION_DENIED",
        tonic::Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        tonic::Code::FailedPrecondition => "FAILED_PRECONDITION",
        tonic::Code::Aborted => "ABORTED",
        tonic::Code::OutOfRange => "OUT_OF_RANGE",
        tonic::Code::Unimplemented => "UNIMPLEMENTED",
        tonic::Code::Internal => "INTERNAL",
        tonic::Code::Unavailable => "UNAVAILABLE",
        tonic::Code::DataLoss => "DATA_LOSS",
        tonic::Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// What the access log says of one call; never a token or a body. A call
/// whose record is dropped unfinished (the client went away) is recorded as
/// CANCELLED.
#[derive(Debug)]
pub struct CallRecord {
    metrics: Metrics,
    /// A known method's path, or [`UNKNOWN_METHOD`].
    pub method: &'static str,
    request_id: RequestId,
    client: std::sync::Arc<str>,
    started: Instant,
    finished: bool,
}

impl CallRecord {
    pub fn start(
        metrics: Metrics,
        method: &'static str,
        request_id: RequestId,
        client: std::sync::Arc<str>,
    ) -> Self {
        Self {
            metrics,
            method,
            request_id,
            client,
            started: Instant::now(),
            finished: false,
        }
    }

    pub fn finish(mut self, code: i32) {
        self.record(code);
    }

    fn record(&mut self, code: i32) {
        self.finished = true;
        let seconds = self.started.elapsed().as_secs_f64();
        self.metrics.record(self.method, code, seconds);
        tracing::info!(
            method = %self.method,
            status = code_name(code),
            latency_ms = seconds * 1000.0,
            request_id = %self.request_id,
            client = %self.client,
            "grpc call"
        );
    }
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        if !self.finished {
            self.record(tonic::Code::Cancelled as i32);
        }
    }
}

/// Which call an access-log line is about: the client's `x-request-id`, or
/// a number the gateway gave it (unique across replicas by a random tag).
#[derive(Debug)]
pub enum RequestId {
    Client(http::HeaderValue),
    Numbered(u64),
}

static NEXT_REQUEST: AtomicU64 = AtomicU64::new(1);
static REPLICA_TAG: LazyLock<u32> = LazyLock::new(rand::random);

impl RequestId {
    pub fn numbered() -> Self {
        RequestId::Numbered(NEXT_REQUEST.fetch_add(1, Ordering::Relaxed))
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestId::Client(id) => f.write_str(id.to_str().unwrap_or("?")),
            RequestId::Numbered(number) => write!(f, "gw-{:08x}-{number}", *REPLICA_TAG),
        }
    }
}

/// The gRPC status carried by headers or trailers, if any.
pub fn grpc_status(headers: &HeaderMap) -> Option<i32> {
    headers
        .get(&tonic::Status::GRPC_STATUS)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// A response body that records the call when its trailers arrive, or when
/// it ends without them (dropped before: the record says CANCELLED).
#[derive(Debug)]
pub struct ObservedBody<B> {
    inner: B,
    record: Option<CallRecord>,
}

impl<B> ObservedBody<B> {
    pub fn new(inner: B, record: CallRecord) -> Self {
        Self {
            inner,
            record: Some(record),
        }
    }

    fn finish(&mut self, code: i32) {
        if let Some(record) = self.record.take() {
            record.finish(code);
        }
    }
}

impl<B> Body for ObservedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(grpc_status) {
                    self.finish(code);
                }
            }
            Poll::Ready(Some(Err(_))) => self.finish(tonic::Code::Internal as i32),
            Poll::Ready(None) => self.finish(tonic::Code::Unknown as i32),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
