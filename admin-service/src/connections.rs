//! Connections the server can cut when its drain deadline passes.
//!
//! A graceful shutdown waits for every connection to finish its streams. A
//! stream whose client stops reading never finishes: its last frames wait
//! for flow-control credit that never comes, and the shutdown with it. Each
//! accepted connection is therefore wrapped in a `Severable`: once the token
//! given to `severable` is cancelled, its reads and writes fail, the HTTP/2
//! connection ends, and the shutdown completes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::{Stream, TryStreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::transport::server::Connected;

/// The connections of `incoming`, each cut when `cut` is cancelled.
pub fn severable<IO, E>(
    incoming: impl Stream<Item = Result<IO, E>>,
    cut: CancellationToken,
) -> impl Stream<Item = Result<Severable<IO>, E>> {
    incoming.map_ok(move |io| Severable {
        io,
        cut: Box::pin(cut.clone().cancelled_owned()),
    })
}

/// A connection whose reads and writes fail once its token is cancelled.
#[derive(Debug)]
pub struct Severable<IO> {
    io: IO,
    /// Polled before every read and write: that registers the connection's
    /// task, so cancelling wakes it even while it waits on the socket.
    cut: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl<IO> Severable<IO> {
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match self.cut.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "connection closed at the drain deadline",
            )),
            Poll::Pending => Ok(()),
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Severable<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Severable<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl<IO: Connected> Connected for Severable<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}
