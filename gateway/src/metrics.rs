//! Request metrics and access logs, recorded where a call ends: when the
//! response body delivers its gRPC trailers (or the headers carry the status
//! of an immediate error). Exposed in Prometheus text format at /metrics.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

/// Latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Default)]
struct Series {
    /// Calls per gRPC status code.
    codes: BTreeMap<i32, u64>,
    bucket_counts: [u64; BUCKETS.len()],
    count: u64,
    sum_seconds: f64,
}

#[derive(Clone, Default)]
pub struct Metrics {
    methods: Arc<Mutex<BTreeMap<String, Series>>>,
}

impl Metrics {
    pub fn record(&self, method: &str, code: i32, seconds: f64) {
        let mut methods = self.methods.lock().expect("metrics lock poisoned");
        if !methods.contains_key(method) {
            methods.insert(method.to_owned(), Series::default());
        }
        let series = methods.get_mut(method).expect("inserted above");
        *series.codes.entry(code).or_default() += 1;
        for (bucket, limit) in series.bucket_counts.iter_mut().zip(BUCKETS) {
            if seconds <= limit {
                *bucket += 1;
            }
        }
        series.count += 1;
        series.sum_seconds += seconds;
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let methods = self.methods.lock().expect("metrics lock poisoned");
        let mut out = String::new();
        out.push_str("# HELP presence_gateway_requests_total gRPC calls through the gateway by method and status code.\n");
        out.push_str("# TYPE presence_gateway_requests_total counter\n");
        for (method, series) in methods.iter() {
            for (code, count) in &series.codes {
                let _ = writeln!(
                    out,
                    "presence_gateway_requests_total{{method=\"{method}\",code=\"{}\"}} {count}",
                    code_name(*code)
                );
            }
        }
        out.push_str("# HELP presence_gateway_request_duration_seconds Time from request to the end of the response.\n");
        out.push_str("# TYPE presence_gateway_request_duration_seconds histogram\n");
        for (method, series) in methods.iter() {
            for (limit, count) in BUCKETS.iter().zip(series.bucket_counts) {
                let _ = writeln!(
                    out,
                    "presence_gateway_request_duration_seconds_bucket{{method=\"{method}\",le=\"{limit}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "presence_gateway_request_duration_seconds_bucket{{method=\"{method}\",le=\"+Inf\"}} {}",
                series.count
            );
            let _ = writeln!(
                out,
                "presence_gateway_request_duration_seconds_sum{{method=\"{method}\"}} {}",
                series.sum_seconds
            );
            let _ = writeln!(
                out,
                "presence_gateway_request_duration_seconds_count{{method=\"{method}\"}} {}",
                series.count
            );
        }
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
pub struct CallRecord {
    metrics: Metrics,
    pub method: String,
    request_id: RequestId,
    client: std::sync::Arc<str>,
    started: Instant,
    finished: bool,
}

impl CallRecord {
    pub fn start(
        metrics: Metrics,
        method: String,
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
        self.metrics.record(&self.method, code, seconds);
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
