//! An HTTP/2 connection held open to a server, idle, to see how it says
//! goodbye when it stops: with a GOAWAY (its clients then open new
//! connections elsewhere and nothing in flight is lost), or by just closing.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use tokio::net::TcpStream;

#[derive(Debug)]
pub struct IdleConnection {
    sender: SendRequest<Bytes>,
}

impl IdleConnection {
    /// Opens an HTTP/2 connection to `address` and keeps it going.
    pub async fn open(address: SocketAddr) -> Self {
        let socket = TcpStream::connect(address)
            .await
            .expect("the server accepts connections");
        let (sender, connection) = h2::client::handshake(socket)
            .await
            .expect("an HTTP/2 handshake");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Self { sender }
    }

    /// How the server ended the connection, once it did (within `within`):
    /// the error a new request would get.
    pub async fn ended(self, within: Duration) -> h2::Error {
        let sender = self.sender;
        crate::eventually(within, "the server ended the connection", || {
            let sender = sender.clone();
            async move { sender.ready().await.err() }
        })
        .await
    }
}
