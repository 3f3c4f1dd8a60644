//! Where switches connect: TCP (`tcp:ADDR:PORT`, OpenFlow's port 6653 by
//! default) or a Unix socket (`unix:PATH`, which Open vSwitch accepts inside
//! its run directory). TLS is a third variant to come; sessions are generic
//! over the stream type, so adding one touches only this module.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

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
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "tcp:{a}"),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// The text is not `tcp:ADDR:PORT`, `ADDR:PORT` or `unix:PATH`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid OpenFlow listen address {0:?}: expected tcp:ADDR:PORT, ADDR:PORT or unix:PATH")]
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
}

/// An accepted connection.
#[derive(Debug)]
pub enum Stream {
    /// TCP.
    Tcp(TcpStream),
    /// Unix.
    Unix(UnixStream),
}

impl Listener {
    /// Binds `addr`; a stale Unix socket file left by a previous run is
    /// replaced.
    pub async fn bind(addr: &ListenAddr) -> std::io::Result<Listener> {
        match addr {
            ListenAddr::Tcp(a) => {
                // A deep backlog: after a controller restart every switch
                // reconnects at once, and the default (128) would turn
                // away the rest for a backoff period.
                let socket = if a.is_ipv4() {
                    TcpSocket::new_v4()?
                } else {
                    TcpSocket::new_v6()?
                };
                socket.set_reuseaddr(true)?;
                socket.bind(*a)?;
                socket.listen(LISTEN_BACKLOG).map(Listener::Tcp)
            }
            ListenAddr::Unix(path) => {
                if path.exists() {
                    std::fs::remove_file(path)?;
                }
                UnixListener::bind(path).map(|l| Listener::Unix(l, path.clone()))
            }
        }
    }

    /// The address actually bound (with the real port for port 0).
    pub fn local_addr(&self) -> std::io::Result<ListenAddr> {
        match self {
            Listener::Tcp(l) => l.local_addr().map(ListenAddr::Tcp),
            Listener::Unix(_, path) => Ok(ListenAddr::Unix(path.clone())),
        }
    }

    /// Waits for the next connection and names its peer.
    pub async fn accept(&self) -> std::io::Result<(Stream, String)> {
        match self {
            Listener::Tcp(l) => {
                let (s, peer) = l.accept().await?;
                // Flow-mods are small and latency matters more than packing.
                s.set_nodelay(true)?;
                Ok((Stream::Tcp(s), format!("tcp:{peer}")))
            }
            Listener::Unix(l, path) => {
                let (s, _) = l.accept().await?;
                Ok((Stream::Unix(s), format!("unix:{}", path.display())))
            }
        }
    }
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
        assert!("nonsense".parse::<ListenAddr>().is_err());
    }
}
