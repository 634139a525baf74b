//! The deadline of a response stream. The services bound only the start of
//! a server stream, so the gateway ends it: with DEADLINE_EXCEEDED at the
//! client's deadline, or UNAVAILABLE when the gateway's drain is over (the
//! browser then reconnects, to another replica).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::HeaderValue;
use http_body::Frame;
use tokio::sync::watch;
use tonic::Status;

/// A response body that ends early with trailers at its deadline or at the
/// end of the drain. An upstream that fails mid-response (its connection
/// died with its process) ends it with trailers too, carrying the failure's
/// status: HTTP/1.1 has no stream reset, so a browser would otherwise see
/// only a broken connection, not a status it can act on.
pub struct DeadlineBody<B> {
    inner: B,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    drain_over: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    expired: bool,
}

impl<B: std::fmt::Debug> std::fmt::Debug for DeadlineBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadlineBody")
            .field("inner", &self.inner)
            .field("deadline", &self.deadline)
            .field("drains", &self.drain_over.is_some())
            .field("expired", &self.expired)
            .finish()
    }
}

impl<B> DeadlineBody<B> {
    pub fn new(
        inner: B,
        deadline: Option<tokio::time::Instant>,
        drain_over: Option<watch::Receiver<bool>>,
    ) -> Self {
        Self {
            inner,
            deadline: deadline.map(|at| Box::pin(tokio::time::sleep_until(at))),
            drain_over: drain_over.map(|mut over| -> Pin<Box<dyn Future<Output = ()> + Send>> {
                Box::pin(async move {
                    // A dropped sender means the gateway is gone: end too.
                    let _ = over.wait_for(|over| *over).await;
                })
            }),
            expired: false,
        }
    }

    fn end(&mut self, status: &Status) -> Frame<Bytes> {
        self.expired = true;
        let mut trailers = http::HeaderMap::new();
        if status.add_header(&mut trailers).is_err() {
            trailers.insert(Status::GRPC_STATUS, HeaderValue::from(status.code() as i32));
        }
        Frame::trailers(trailers)
    }
}

impl<B> http_body::Body for DeadlineBody<B>
where
    B: http_body::Body<Data = Bytes, Error = Status> + Unpin,
{
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if self.expired {
            return Poll::Ready(None);
        }
        if let Some(deadline) = self.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            let trailers = self.end(&Status::deadline_exceeded("deadline exceeded"));
            return Poll::Ready(Some(Ok(trailers)));
        }
        if let Some(drain_over) = self.drain_over.as_mut()
            && drain_over.as_mut().poll(cx).is_ready()
        {
            let trailers = self.end(&Status::unavailable(
                "the gateway is shutting down; reconnect",
            ));
            return Poll::Ready(Some(Ok(trailers)));
        }
        match ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
            Some(Err(status)) => {
                tracing::warn!(code = ?status.code(), "the upstream failed mid-response; ending it with a status");
                Poll::Ready(Some(Ok(self.end(&status))))
            }
            Some(Ok(frame)) => Poll::Ready(Some(Ok(frame))),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.expired || self.inner.is_end_stream()
    }
}
