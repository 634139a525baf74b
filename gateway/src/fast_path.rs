//! The fast path, for the calls that make up nearly all of the gateway's
//! traffic: binary gRPC-Web, unary, from the gateway's own origin (every
//! ping of every open tab). The request's bytes are already gRPC frames, so
//! they go upstream as they came; the response is read whole and written
//! back in one piece, its trailers framed into the body as gRPC-Web wants.
//! It skips the router, CORS and tonic-web because that is measurably
//! cheaper per ping (docs/benchmarks.md).
//!
//! Everything else takes the slow path (`service`): text mode, server
//! streams and calls from other origins go through CORS, tonic-web and
//! `forward`. Both paths apply the same edge rules (`admission`).

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, Request, Response, header};
use http_body_util::Full;
use tonic::Status;

use crate::admission::Client;
use crate::edge::{self, EdgeRules};
use crate::forward::{self, Forwarder};
use crate::metrics::grpc_status;
use crate::upstream::WholeResponse;

const BINARY: &str = "application/grpc-web+proto";
/// The flag byte of a gRPC-Web frame that carries trailers.
const TRAILERS_FRAME: u8 = 0x80;

/// Whether `request` takes the fast path. A request that declares a body
/// over the size limit does not: the edge guard refuses it on the slow path.
pub fn accepts<B>(request: &Request<B>, forwarder: &Forwarder, rules: &EdgeRules) -> bool {
    let headers = request.headers();
    let binary = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value == "application/grpc-web" || value == BINARY);
    // A client that asks for text responses gets them on the slow path.
    let wants_text = headers
        .get(header::ACCEPT)
        .is_some_and(|value| value.as_bytes().windows(13).any(|w| w == b"grpc-web-text"));
    binary
        && !wants_text
        && request.method() == Method::POST
        && !forwarder.is_streaming(request.uri().path())
        && rules.same_origin(headers, request.uri())
        && !rules.declares_too_large(headers)
}

/// Forwards one binary unary gRPC-Web call and responds in gRPC-Web.
pub async fn unary<B>(
    forwarder: &Forwarder,
    request: Request<B>,
    client: &Client,
) -> Response<Full<Bytes>>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (mut head, body) = request.into_parts();
    let path = head.uri.path().to_owned();
    let admitted = match forwarder.admit(&path, &mut head.headers, client) {
        Ok(admitted) => admitted,
        Err(status) => return trailers_only(status),
    };
    as_grpc(&mut head.headers);
    match forward::exchange(admitted, Request::from_parts(head, body)).await {
        Ok((response, record)) => {
            record.finish(response_code(&response));
            encode(response)
        }
        Err(status) => trailers_only(status),
    }
}

/// The headers of the same call in native gRPC.
fn as_grpc(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(header::TE, HeaderValue::from_static("trailers"));
}

/// The status a response ends with: in its trailers, or in its headers when
/// it has no body.
fn response_code(response: &WholeResponse) -> i32 {
    grpc_status(&response.trailers)
        .or_else(|| grpc_status(&response.head.headers))
        .unwrap_or(tonic::Code::Unknown as i32)
}

/// The gRPC response in gRPC-Web: the messages, then the trailers as a frame.
fn encode(response: WholeResponse) -> Response<Full<Bytes>> {
    let WholeResponse {
        mut head,
        messages,
        trailers,
    } = response;
    let mut trailer_block = Vec::with_capacity(64);
    for (name, value) in &trailers {
        trailer_block.extend_from_slice(name.as_str().as_bytes());
        trailer_block.push(b':');
        trailer_block.extend_from_slice(value.as_bytes());
        trailer_block.extend_from_slice(b"\r\n");
    }
    let mut body = BytesMut::with_capacity(messages.len() + 5 + trailer_block.len());
    body.extend_from_slice(&messages);
    if !trailer_block.is_empty() {
        body.put_u8(TRAILERS_FRAME);
        body.put_u32(trailer_block.len() as u32);
        body.extend_from_slice(&trailer_block);
    }
    head.headers.remove(header::CONTENT_LENGTH);
    head.headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(BINARY));
    Response::from_parts(head, Full::new(body.freeze()))
}

/// A response that is only a status, in the headers.
fn trailers_only(status: Status) -> Response<Full<Bytes>> {
    edge::trailers_only(status, HeaderValue::from_static(BINARY))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A gRPC-Web body split into its data and its trailer frames, strictly:
    /// every frame whole, trailers last.
    fn split_frames(mut body: &[u8]) -> (Vec<u8>, Vec<(String, String)>) {
        let mut data = Vec::new();
        let mut trailers = Vec::new();
        while !body.is_empty() {
            assert!(body.len() >= 5, "a whole frame header");
            let flags = body[0];
            let length = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
            let payload = &body[5..5 + length];
            if flags == TRAILERS_FRAME {
                let block = std::str::from_utf8(payload).unwrap();
                for line in block.split_terminator("\r\n") {
                    let (name, value) = line.split_once(':').unwrap();
                    trailers.push((name.to_owned(), value.to_owned()));
                }
                assert_eq!(5 + length, body.len(), "the trailers come last");
            } else {
                data.extend_from_slice(&body[..5 + length]);
            }
            body = &body[5 + length..];
        }
        (data, trailers)
    }

    fn framed(messages: &[Vec<u8>]) -> Vec<u8> {
        let mut framed = Vec::new();
        for message in messages {
            framed.push(0);
            framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
            framed.extend_from_slice(message);
        }
        framed
    }

    proptest! {
        #[test]
        fn encoded_responses_round_trip(
            messages in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..100), 0..4),
            trailers in proptest::collection::btree_map("[a-z][a-z0-9-]{0,12}", "[!-~][ -~]{0,30}", 0..5),
        ) {
            let mut map = HeaderMap::new();
            for (name, value) in &trailers {
                map.insert(
                    http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    HeaderValue::from_str(value).unwrap(),
                );
            }
            let (head, ()) = Response::new(()).into_parts();
            let messages = framed(&messages);
            let whole = WholeResponse { head, messages: Bytes::from(messages.clone()), trailers: map };
            let body = futures::executor::block_on(http_body_util::BodyExt::collect(encode(whole).into_body()))
                .unwrap()
                .to_bytes();
            let (data, read_trailers) = split_frames(&body);
            prop_assert_eq!(data, messages);
            let expected: Vec<(String, String)> = trailers.into_iter().collect();
            let mut read_trailers = read_trailers;
            read_trailers.sort();
            prop_assert_eq!(read_trailers, expected);
        }

        #[test]
        fn any_bytes_as_a_response_are_passed_on_unchanged(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let (head, ()) = Response::new(()).into_parts();
            let whole = WholeResponse { head, messages: Bytes::from(bytes.clone()), trailers: HeaderMap::new() };
            let body = futures::executor::block_on(http_body_util::BodyExt::collect(encode(whole).into_body()))
                .unwrap()
                .to_bytes();
            prop_assert_eq!(&body[..], &bytes[..]);
        }
    }

    #[test]
    fn trailers_follow_the_messages_in_a_flagged_frame() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        let (head, ()) = Response::new(()).into_parts();
        let whole = WholeResponse {
            head,
            messages: Bytes::from_static(b"\0\0\0\0\x02hi"),
            trailers,
        };
        let response = encode(whole);
        assert_eq!(response.headers()[header::CONTENT_TYPE], BINARY);
        let body =
            futures::executor::block_on(http_body_util::BodyExt::collect(response.into_body()))
                .unwrap()
                .to_bytes();
        assert_eq!(&body[..7], b"\0\0\0\0\x02hi");
        assert_eq!(body[7], TRAILERS_FRAME);
        assert_eq!(&body[8..12], &15u32.to_be_bytes());
        assert_eq!(&body[12..], b"grpc-status:0\r\n");
    }
}
