//! A minimal EC2 Query API client: HTTP/1.1 keep-alive over one TCP
//! connection, every request signed afresh with SigV4, as a real client
//! does. Shared by the load generator and `flowgate-bench`.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One server under test.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its name in reports.
    pub name: &'static str,
    /// Where it listens.
    pub addr: SocketAddr,
    /// The region requests are signed for.
    pub region: &'static str,
    /// Access key id.
    pub key: String,
    /// Secret access key.
    pub secret: String,
}

/// An HTTP/1.1 connection that reconnects when the server closes it.
pub struct Connection {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Connection {
    /// A connection to `addr`, opened on first use.
    pub fn new(addr: SocketAddr) -> Connection {
        Connection {
            addr,
            stream: None,
            buf: Vec::with_capacity(64 * 1024),
        }
    }

    /// POSTs `body` with `headers`; returns (status, body).
    pub async fn post(
        &mut self,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(u16, Vec<u8>), String> {
        let mut request = String::with_capacity(512);
        request.push_str("POST / HTTP/1.1\r\n");
        for (k, v) in headers {
            request.push_str(k);
            request.push_str(": ");
            request.push_str(v);
            request.push_str("\r\n");
        }
        request.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(body);
        for attempt in 0..2 {
            if self.stream.is_none() {
                let stream = TcpStream::connect(self.addr)
                    .await
                    .map_err(|e| format!("connect: {e}"))?;
                let _ = stream.set_nodelay(true);
                self.stream = Some(stream);
                self.buf.clear();
            }
            match self.exchange(&bytes).await {
                Ok(answer) => return Ok(answer),
                Err(err) if attempt == 0 => {
                    // A keep-alive connection the server closed: retry once on a new one.
                    self.stream = None;
                    let _ = err;
                }
                Err(err) => return Err(err),
            }
        }
        Err("unreachable".into())
    }

    async fn exchange(&mut self, request: &[u8]) -> Result<(u16, Vec<u8>), String> {
        let stream = self.stream.as_mut().ok_or("no connection")?;
        stream
            .write_all(request)
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut chunk = [0u8; 16 * 1024];
        let head_end = loop {
            if let Some(pos) = find(&self.buf, b"\r\n\r\n") {
                break pos + 4;
            }
            let n = stream.read(&mut chunk).await.map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("connection closed".into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).to_ascii_lowercase();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or("bad status line")?;
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or("no content-length")?;
        let close = head
            .lines()
            .any(|l| l.starts_with("connection:") && l.contains("close"));
        while self.buf.len() < head_end + length {
            let n = stream.read(&mut chunk).await.map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("connection closed mid-body".into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
        let body = self.buf[head_end..head_end + length].to_vec();
        self.buf.drain(..head_end + length);
        if close {
            self.stream = None;
        }
        Ok((status, body))
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A form body of `pairs`, URI-encoded as SigV4 expects.
pub fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", ec2api::auth::uri_encode(k), ec2api::auth::uri_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
        .into_bytes()
}

/// Sends one signed request; fails on a non-200 answer.
pub async fn call(conn: &mut Connection, target: &Target, pairs: &[(&str, &str)]) -> Result<Vec<u8>, String> {
    let body = form(pairs);
    let host = target.addr.to_string();
    let headers = ec2api::auth::sign_v4_post(
        &host,
        &body,
        &target.key,
        &target.secret,
        target.region,
        &ec2api::auth::format_amz_date(now_secs()),
    );
    let (status, answer) = conn.post(&headers, &body).await?;
    if status != 200 {
        return Err(format!(
            "{} answered {status}: {}",
            target.name,
            String::from_utf8_lossy(&answer)
        ));
    }
    Ok(answer)
}

/// The text of the first `<tag>` element of `xml`.
pub fn element<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(&xml[start..end])
}
