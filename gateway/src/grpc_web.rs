//! The direct way for the calls that make up nearly all of the gateway's
//! traffic: binary gRPC-Web, unary, from the gateway's own origin (every
//! ping of every open tab). The request's bytes are already gRPC frames, so
//! they go upstream as they came; the answer is read whole and written back
//! in one piece, its trailers framed into the body as gRPC-Web wants.
//!
//! Everything else takes the general way (`startup`): text mode, server
//! streams and calls from other origins go through CORS, tonic-web and
//! `forward`. Both ways apply the same edge rules (`Forwarder::admit`).

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, Request, Response, header};
use http_body_util::Full;
use tonic::Status;

use crate::edge::{self, EdgeRules};
use crate::forward::{Admission, Client, Forwarder};
use crate::metrics::grpc_status;
use crate::upstream::WholeAnswer;

const BINARY: &str = "application/grpc-web+proto";
/// The flag byte of a gRPC-Web frame that carries trailers.
const TRAILERS_FRAME: u8 = 0x80;
/// The largest answer of the gateway's own health service.
const MAX_HEALTH_ANSWER_BYTES: usize = 64 * 1024;

/// Whether `request` takes the direct way.
pub fn takes<B>(request: &Request<B>, forwarder: &Forwarder, rules: &EdgeRules) -> bool {
    let headers = request.headers();
    let binary = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value == "application/grpc-web" || value == BINARY);
    // A client that asks for text answers gets them the general way.
    let wants_text = headers
        .get(header::ACCEPT)
        .is_some_and(|value| value.as_bytes().windows(13).any(|w| w == b"grpc-web-text"));
    binary
        && !wants_text
        && request.method() == Method::POST
        && !forwarder.is_streaming(request.uri().path())
        && rules.same_origin(headers, request.uri())
}

/// Forwards one binary unary gRPC-Web call and answers it in gRPC-Web.
pub async fn unary<B>(
    forwarder: &Forwarder,
    rules: &EdgeRules,
    request: Request<B>,
    client: &Client,
) -> Response<Full<Bytes>>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if rules.declares_too_large(request.headers()) {
        return trailers_only(Status::resource_exhausted("request too large"));
    }
    let (mut head, body) = request.into_parts();
    let path = head.uri.path().to_owned();
    let admitted = match forwarder.admit(&path, &mut head.headers, client) {
        Admission::Forward(admitted) => admitted,
        Admission::Refused(status) => return trailers_only(status),
        Admission::Health { record, .. } => {
            let answer = Box::pin(health(forwarder, head, body)).await;
            let code = match &answer {
                Ok(answer) => answer_code(answer),
                Err(status) => status.code() as i32,
            };
            record.finish(code);
            return match answer {
                Ok(answer) => encode(answer),
                Err(status) => trailers_only(status),
            };
        }
    };
    as_grpc(&mut head.headers);
    match admitted.exchange(Request::from_parts(head, body)).await {
        Ok((answer, record)) => {
            record.finish(answer_code(&answer));
            encode(answer)
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

/// Asks the gateway's own health service.
async fn health<B>(
    forwarder: &Forwarder,
    mut head: http::request::Parts,
    body: B,
) -> Result<WholeAnswer, Status>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    as_grpc(&mut head.headers);
    let request = Request::from_parts(head, tonic::body::Body::new(body));
    let response = forwarder.ask_health(request).await?;
    WholeAnswer::read(response, MAX_HEALTH_ANSWER_BYTES)
        .await
        .map_err(|error| error.status())
}

/// The status an answer ends with: in its trailers, or in its headers when
/// it has no body.
fn answer_code(answer: &WholeAnswer) -> i32 {
    grpc_status(&answer.trailers)
        .or_else(|| grpc_status(&answer.head.headers))
        .unwrap_or(tonic::Code::Unknown as i32)
}

/// The gRPC answer in gRPC-Web: the messages, then the trailers as a frame.
fn encode(answer: WholeAnswer) -> Response<Full<Bytes>> {
    let WholeAnswer {
        mut head,
        messages,
        trailers,
    } = answer;
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

/// An answer that is only a status, in the headers.
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
        fn encoded_answers_round_trip(
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
            let answer = WholeAnswer { head, messages: Bytes::from(messages.clone()), trailers: map };
            let body = futures::executor::block_on(http_body_util::BodyExt::collect(encode(answer).into_body()))
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
        fn any_bytes_as_an_answer_are_passed_on_unchanged(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let (head, ()) = Response::new(()).into_parts();
            let answer = WholeAnswer { head, messages: Bytes::from(bytes.clone()), trailers: HeaderMap::new() };
            let body = futures::executor::block_on(http_body_util::BodyExt::collect(encode(answer).into_body()))
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
        let answer = WholeAnswer {
            head,
            messages: Bytes::from_static(b"\0\0\0\0\x02hi"),
            trailers,
        };
        let response = encode(answer);
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
