//! Mutating requests a follower node hands to the leader.
//!
//! Nodes on one PostgreSQL store serialise their transactions on one lock,
//! so writes spread over several nodes commit in small batches, one node
//! after the other, and get slower with each node (docs/benchmarks.md). A
//! follower therefore forwards every mutating action, unchanged (headers,
//! signature and body as the client sent them), to the leader's API, whose
//! one writer batches them all; reads stay local. The leader never forwards
//! a request that was forwarded to it.
//!
//! A forward that cannot even connect (the leader just died, and no other
//! is known yet) is answered locally: nothing was sent, so nothing can be
//! done twice. Once sent, the leader's answer (or `Unavailable` if none
//! comes) is the answer: the request may have been carried out.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The header a forwarded request carries, so that it is never forwarded
/// again.
pub const FORWARDED: &str = "x-flowgate-forwarded";

/// How long a forward may take, connection to the end of the answer.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The largest answer taken from the leader.
const MAX_ANSWER: u64 = 16 * 1024 * 1024;

/// Headers that belong to one connection and are not passed on.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

/// Why a forward failed.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// No connection to the leader: nothing was sent.
    #[error("cannot reach the leader at {0}: {1}")]
    Unreachable(SocketAddr, std::io::Error),
    /// Sent, but no usable answer: the request may have been carried out.
    #[error("no usable answer from the leader at {0}: {1}")]
    NoAnswer(SocketAddr, String),
}

/// Sends the request to the leader at `leader` and returns its answer.
pub async fn send(
    leader: SocketAddr,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ForwardError> {
    let mut stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(leader))
        .await
        .map_err(|_| ForwardError::Unreachable(leader, std::io::ErrorKind::TimedOut.into()))?
        .map_err(|e| ForwardError::Unreachable(leader, e))?;
    let no_answer = |e: String| ForwardError::NoAnswer(leader, e);
    let request = encode_request(method, uri, headers, body);
    let exchange = async {
        stream.write_all(&request).await?;
        let mut answer = Vec::new();
        (&mut stream).take(MAX_ANSWER).read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| no_answer(format!("none within {TIMEOUT:?}")))?
        .map_err(|e| no_answer(e.to_string()))?;
    decode_response(&answer).map_err(no_answer)
}

/// The request as HTTP/1.1 bytes, on a connection of its own.
fn encode_request(method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Vec<u8> {
    let target = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut out = format!("{method} {target} HTTP/1.1\r\n").into_bytes();
    for (name, value) in headers {
        if HOP_BY_HOP.contains(&name.as_str()) || name.as_str() == FORWARDED {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(
        format!(
            "{FORWARDED}: 1\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(body);
    out
}

/// The leader's answer: status, end-to-end headers and a body of the
/// length it declared (its answers always declare one).
fn decode_response(bytes: &[u8]) -> Result<Response, String> {
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("the answer ended in its headers")?;
    let head = std::str::from_utf8(&bytes[..split]).map_err(|_| "headers are not text")?;
    let body = &bytes[split + 4..];
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or("no status line")?;
    let mut response = Response::builder().status(status);
    let mut length = None;
    for line in lines {
        let (name, value) = line.split_once(':').ok_or("a header without a colon")?;
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        if name == "content-length" {
            length = value.parse::<usize>().ok();
            continue;
        }
        if name == "transfer-encoding" {
            return Err(format!("transfer-encoding {value} is not expected"));
        }
        if HOP_BY_HOP.contains(&name.as_str()) {
            continue;
        }
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?;
        let value = HeaderValue::from_str(value).map_err(|e| e.to_string())?;
        response = response.header(name, value);
    }
    let length = length.ok_or("no content-length")?;
    let body = body.get(..length).ok_or("the answer is shorter than it says")?;
    response
        .body(Body::from(body.to_vec()))
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_keep_their_headers_and_body_and_say_they_were_forwarded() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("api.example:8773"));
        headers.insert(
            "authorization",
            HeaderValue::from_static("AWS4-HMAC-SHA256 Credential=x"),
        );
        headers.insert("connection", HeaderValue::from_static("keep-alive"));
        headers.insert("content-length", HeaderValue::from_static("999"));
        let uri: Uri = "/?Version=2016-11-15".parse().unwrap_or_default();
        let bytes = encode_request(&Method::POST, &uri, &headers, b"Action=AllocateAddress");
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            text.starts_with("POST /?Version=2016-11-15 HTTP/1.1\r\n"),
            "{text}"
        );
        assert!(text.contains("host: api.example:8773\r\n"));
        assert!(text.contains("authorization: AWS4-HMAC-SHA256 Credential=x\r\n"));
        assert!(!text.contains("keep-alive") && !text.contains("999"), "{text}");
        assert!(text.contains("x-flowgate-forwarded: 1\r\ncontent-length: 22\r\nconnection: close\r\n\r\n"));
        assert!(text.ends_with("\r\n\r\nAction=AllocateAddress"));
    }

    #[test]
    fn answers_are_taken_whole_or_not_at_all() {
        let ok = b"HTTP/1.1 200 OK\r\ncontent-type: text/xml\r\ncontent-length: 5\r\nconnection: close\r\n\r\n<a/>\n";
        let response = decode_response(ok).map_err(|e| e.to_string());
        assert!(matches!(&response, Ok(r) if r.status() == StatusCode::OK));
        let headers = response.map(|r| r.headers().clone()).unwrap_or_default();
        assert_eq!(
            headers.get("content-type").map(|v| v.as_bytes()),
            Some(&b"text/xml"[..])
        );
        assert!(headers.get("connection").is_none());
        for bad in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\nshort"[..],
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 5",
            b"garbage\r\n\r\n",
        ] {
            assert!(decode_response(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
