//! Where switches connect: TCP (`tcp:ADDR:PORT`, OpenFlow's port 6653 by
//! default), a Unix socket (`unix:PATH`, which Open vSwitch accepts inside
//! its run directory), or TLS over TCP (`ssl:ADDR:PORT`, Open vSwitch's
//! `ssl:` targets), where the switch must present a certificate the
//! configured CA signed. Sessions are generic over the stream type; a TLS
//! connection is handed over before its handshake ([`Stream::Tls`]), so
//! that a slow or hostile peer holds up only its own task, never the
//! accept loop.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpSocket, TcpStream, UnixListener, UnixStream};

/// Connections the kernel queues before the controller accepts them.
const LISTEN_BACKLOG: u32 = 4096;

/// A listening address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// TCP.
    Tcp(SocketAddr),
    /// A Unix stream socket.
    Unix(PathBuf),
    /// TLS over TCP; bound with [`Listener::bind_tls`], which takes the
    /// certificates.
    Tls(SocketAddr),
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "tcp:{a}"),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
            ListenAddr::Tls(a) => write!(f, "ssl:{a}"),
        }
    }
}

/// The text is not `tcp:ADDR:PORT`, `ADDR:PORT`, `unix:PATH` or
/// `ssl:ADDR:PORT` (`tls:` too).
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "invalid OpenFlow listen address {0:?}: expected tcp:ADDR:PORT, ADDR:PORT, unix:PATH or ssl:ADDR:PORT"
)]
pub struct ParseListenAddrError(String);

impl FromStr for ListenAddr {
    type Err = ParseListenAddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(ParseListenAddrError(s.to_string()));
            }
            return Ok(ListenAddr::Unix(PathBuf::from(path)));
        }
        if let Some(addr) = s.strip_prefix("ssl:").or_else(|| s.strip_prefix("tls:")) {
            return addr
                .parse()
                .map(ListenAddr::Tls)
                .map_err(|_| ParseListenAddrError(s.to_string()));
        }
        let addr = s.strip_prefix("tcp:").unwrap_or(s);
        addr.parse()
            .map(ListenAddr::Tcp)
            .map_err(|_| ParseListenAddrError(s.to_string()))
    }
}

/// A bound listener.
#[derive(Debug)]
pub enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// Unix.
    Unix(UnixListener, PathBuf),
    /// TLS over TCP: connections are handed over before their handshake.
    Tls(TcpListener, Arc<tls::ServerConfig>),
}

/// An accepted connection.
#[derive(Debug)]
pub enum Stream {
    /// TCP.
    Tcp(TcpStream),
    /// Unix.
    Unix(UnixStream),
    /// TLS over TCP, before its handshake: [`PendingTls::handshake`]
    /// completes it (or says why the peer is refused).
    Tls(PendingTls),
}

/// A TCP connection to a TLS listener whose handshake has yet to be made.
#[derive(Debug)]
pub struct PendingTls {
    tcp: TcpStream,
    config: Arc<tls::ServerConfig>,
}

impl PendingTls {
    /// Completes the handshake within `timeout`. It fails, and the
    /// connection must be dropped, when the peer shows no certificate, one
    /// the listener's CA did not sign (self-signed, another CA's), an
    /// expired one, or no TLS at all.
    pub async fn handshake(
        self,
        timeout: std::time::Duration,
    ) -> Result<tls::TlsStream<TcpStream>, tls::HandshakeError> {
        tls::accept(&self.config, self.tcp, timeout).await
    }
}

impl Listener {
    /// Binds `addr`; a stale Unix socket file left by a previous run is
    /// replaced. A TLS address needs certificates: bind it with
    /// [`Listener::bind_tls`].
    pub async fn bind(addr: &ListenAddr) -> std::io::Result<Listener> {
        match addr {
            ListenAddr::Tcp(a) => bind_tcp(*a).map(Listener::Tcp),
            ListenAddr::Tls(_) => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{addr} needs a certificate, a key and a CA: bind it with Listener::bind_tls"),
            )),
            ListenAddr::Unix(path) => {
                if path.exists() {
                    std::fs::remove_file(path)?;
                }
                UnixListener::bind(path).map(|l| Listener::Unix(l, path.clone()))
            }
        }
    }

    /// Binds a TLS listener on `addr` with `config`, normally one that
    /// requires client certificates (`tls::server_config` with a CA), as
    /// Open vSwitch's `ssl:` controller targets expect.
    pub async fn bind_tls(addr: SocketAddr, config: Arc<tls::ServerConfig>) -> std::io::Result<Listener> {
        let tcp = bind_tcp(addr)?;
        Ok(Listener::Tls(tcp, config))
    }

    /// The address actually bound (with the real port for port 0).
    pub fn local_addr(&self) -> std::io::Result<ListenAddr> {
        match self {
            Listener::Tcp(l) => l.local_addr().map(ListenAddr::Tcp),
            Listener::Unix(_, path) => Ok(ListenAddr::Unix(path.clone())),
            Listener::Tls(l, _) => l.local_addr().map(ListenAddr::Tls),
        }
    }

    /// Waits for the next connection and names its peer.
    ///
    /// Failures of accepting are logged and waited out, never returned: a
    /// connection reset before it was accepted concerns that one peer, and
    /// running out of file descriptors (every switch reconnecting at once
    /// after a restart) passes. A listener that ended on them would leave
    /// every switch without a controller until the next restart.
    pub async fn accept(&self) -> std::io::Result<(Stream, String)> {
        loop {
            match self.accept_one().await {
                Ok(accepted) => return Ok(accepted),
                Err(error) if is_one_connections_error(&error) => {
                    tracing::debug!(listener = %self.describe(), %error, "a connection failed before it was accepted");
                }
                Err(error) => {
                    tracing::warn!(listener = %self.describe(), %error, "cannot accept connections; retrying");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                }
            }
        }
    }

    async fn accept_one(&self) -> std::io::Result<(Stream, String)> {
        match self {
            Listener::Tcp(l) => {
                let (s, peer) = l.accept().await?;
                // Flow-mods are small and latency matters more than packing.
                // Best effort: a socket that refuses it still works.
                let _ = s.set_nodelay(true);
                Ok((Stream::Tcp(s), format!("tcp:{peer}")))
            }
            Listener::Unix(l, path) => {
                let (s, _) = l.accept().await?;
                Ok((Stream::Unix(s), format!("unix:{}", path.display())))
            }
            Listener::Tls(l, config) => {
                let (tcp, peer) = l.accept().await?;
                let _ = tcp.set_nodelay(true);
                let pending = PendingTls {
                    tcp,
                    config: config.clone(),
                };
                Ok((Stream::Tls(pending), format!("ssl:{peer}")))
            }
        }
    }

    /// The listener's address for logs.
    fn describe(&self) -> String {
        self.local_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| "?".to_string())
    }
}

/// How long to wait before accepting again after a failure that is not
/// one connection's (out of file descriptors or memory).
const ACCEPT_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

/// Whether an accept failure concerns only the connection being accepted.
fn is_one_connections_error(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    )
}

/// A TCP listening socket on `addr`.
fn bind_tcp(addr: SocketAddr) -> std::io::Result<TcpListener> {
    // A deep backlog: after a controller restart every switch reconnects
    // at once, and the default (128) would turn away the rest for a
    // backoff period.
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listen_addresses() {
        assert_eq!(
            "tcp:127.0.0.1:6653".parse::<ListenAddr>().unwrap().to_string(),
            "tcp:127.0.0.1:6653"
        );
        assert_eq!(
            "0.0.0.0:6653".parse::<ListenAddr>().unwrap().to_string(),
            "tcp:0.0.0.0:6653"
        );
        assert_eq!(
            "unix:/run/x.sock".parse::<ListenAddr>().unwrap().to_string(),
            "unix:/run/x.sock"
        );
        assert!("unix:".parse::<ListenAddr>().is_err());
        for tls in ["ssl:0.0.0.0:6653", "tls:0.0.0.0:6653"] {
            assert_eq!(tls.parse::<ListenAddr>().unwrap().to_string(), "ssl:0.0.0.0:6653");
        }
        assert!("ssl:nowhere".parse::<ListenAddr>().is_err());
        assert!("nonsense".parse::<ListenAddr>().is_err());
    }
}
