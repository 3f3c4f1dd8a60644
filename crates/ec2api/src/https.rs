//! The API over HTTPS: a listener for `axum::serve` that yields connections
//! whose TLS handshake is complete.
//!
//! Handshakes run in tasks of their own, at most [`MAX_HANDSHAKES`] at a
//! time and each within [`HANDSHAKE_TIMEOUT`], so that a client that
//! connects and stalls holds up neither the accept loop nor other clients.
//! Finished connections wait in a bounded queue for the server to take
//! them; when it is full, handshakes wait, and past the bound on
//! handshakes, connections wait in the kernel's backlog.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

/// TLS handshakes in progress at once.
pub const MAX_HANDSHAKES: usize = 256;

/// How long a client gets to complete its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections handshaken but not yet taken by the server.
const READY_QUEUE: usize = 64;

/// A TLS listener for `axum::serve`. Dropping it (the server stops
/// accepting at shutdown) stops accepting connections.
pub struct TlsListener {
    ready: mpsc::Receiver<(tls::TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    acceptor: JoinHandle<()>,
}

impl TlsListener {
    /// Starts accepting on `tcp` and handshaking with `config` on the
    /// current runtime.
    pub fn start(tcp: TcpListener, config: Arc<tls::ServerConfig>) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        let acceptor = tokio::spawn(accept_loop(tcp, config, tx));
        Ok(TlsListener {
            ready,
            local,
            acceptor,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

async fn accept_loop(
    tcp: TcpListener,
    config: Arc<tls::ServerConfig>,
    ready: mpsc::Sender<(tls::TlsStream<TcpStream>, SocketAddr)>,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        // Take a handshake slot first: with none free, connections wait
        // in the kernel's backlog rather than in memory here.
        let Ok(slot) = handshakes.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match tcp.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors, a connection reset before it
                // was accepted: wait a little and go on, as axum does.
                tracing::warn!(%error, "HTTPS accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (config, ready) = (config.clone(), ready.clone());
        tokio::spawn(async move {
            let _slot = slot;
            match tls::accept(&config, stream, HANDSHAKE_TIMEOUT).await {
                // The receiver is gone once the server stops: drop it then.
                Ok(stream) => {
                    let _ = ready.send((stream, peer)).await;
                }
                Err(error) => tracing::debug!(%peer, %error, "HTTPS client refused"),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tls::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accept loop only ends when aborted, which happens when
            // this listener is dropped: nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
