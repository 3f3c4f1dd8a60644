//! The bound on requests in progress cannot be held by clients that send
//! headers and then nothing: such a request gives its place up once its
//! body is late, is answered `Unavailable`, and others pass again, while
//! the stalled client still has its connection open. (That others are
//! turned away while it holds the place is shown through the real server,
//! with the default 30 s for the body, in crates/flowgate/tests/limits.rs:
//! here, any look at it would race the short deadline.)
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use ec2api::limits::Limits;
use ec2api::{Api, ApiConfig};
use store::{Store, StoreOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An unsigned POST over a fresh connection: (status, body).
async fn post(addr: std::net::SocketAddr) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let body = "Action=DescribeRegions&Version=2016-11-15";
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    read_answer(&mut stream).await
}

/// The status and body of the answer on `stream`, read within 10 s.
async fn read_answer(stream: &mut TcpStream) -> (u16, String) {
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buffer = [0u8; 4096];
        // Up to the end of the body: the server closes, or says how long.
        loop {
            let n = stream.read(&mut buffer).await.unwrap_or(0);
            answer.extend_from_slice(&buffer[..n]);
            let text = String::from_utf8_lossy(&answer);
            if n == 0 || text.contains("</Response>") {
                return;
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    assert!(read.is_ok(), "no answer within 10 s; so far: {text:?}");
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_body_never_comes_gives_its_place_up() {
    let dir = std::env::temp_dir().join(format!("flowgate-ec2api-limits-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::open_sqlite(&dir, StoreOptions::default()).await.unwrap();
    let config = ApiConfig {
        limits: Limits {
            max_in_flight: 1,
            body_timeout: Duration::from_millis(300),
            ..Limits::UNLIMITED
        },
        ..ApiConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let api = Arc::new(Api::new(store, config));
    tokio::spawn(ec2api::serve(api.clone(), listener, std::future::pending()));
    // Requests pass (unsigned, so refused, after taking the place).
    assert_eq!(post(addr).await.0, 401);

    // Headers, a promise of 1000 bytes, and then nothing.
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled
        .write_all(
            b"POST / HTTP/1.1\r\nHost: flowgate\r\n\
              Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\nAction=",
        )
        .await
        .unwrap();
    // The stalled request is answered without its body, its client still
    // connected, and the place is free again.
    let (status, body) = read_answer(&mut stalled).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("did not arrive within"), "{body}");
    assert_eq!(post(addr).await.0, 401, "the place was not freed");
    let mut text = metrics::Text::new();
    api.metrics().write(&mut text);
    assert!(
        text.finish()
            .contains("flowgate_api_requests_refused_total{reason=\"body_timeout\"} 1\n"),
        "the late body is counted"
    );
    drop(stalled);
    let _ = std::fs::remove_dir_all(&dir);
}
