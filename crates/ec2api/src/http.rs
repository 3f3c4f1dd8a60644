//! The HTTP/1.1 server under the API: the router served by hyper on plain
//! TCP or on [`crate::https::TlsListener`]'s connections, with two bounds
//! `axum::serve` does not set:
//!
//! * a connection must send a request's headers within
//!   [`Limits::header_timeout`] of connecting or of its previous answer,
//!   else it is closed: clients that send nothing, or trickle their
//!   headers a byte at a time, would otherwise each hold a socket for
//!   ever (and an idle keep-alive connection is closed after as long);
//! * at most [`Limits::max_connections`] connections are open at once;
//!   beyond, new ones wait in the kernel's backlog until one closes,
//!   rather than the server running out of file descriptors.
//!
//! A request's body has a deadline of its own and requests in progress a
//! bound of their own (see [`crate::limits`]).

use std::sync::Arc;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::{Semaphore, watch};

use crate::Api;
use crate::limits::Limits;

/// Serves `router` on the connections of `listener` until `shutdown`
/// completes; then stops accepting, lets the requests in progress finish
/// (idle connections are closed) and returns once every connection is.
pub(crate) async fn serve<L>(
    mut listener: L,
    router: Router,
    api: Arc<Api>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) where
    L: axum::serve::Listener,
{
    let limits: Limits = api.config.limits;
    let connections = (limits.max_connections > 0).then(|| Arc::new(Semaphore::new(limits.max_connections)));
    // Dropped at shutdown: connections see it and finish what they do.
    let (stop_tx, stop_rx) = watch::channel(());
    // Every connection holds a receiver: all are gone once `closed`
    // completes.
    let (closed_tx, closed_rx) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // Take a place first: with none free, connections wait in the
        // kernel's backlog, not in memory here.
        let place = match &connections {
            Some(semaphore) => tokio::select! {
                place = semaphore.clone().acquire_owned() => match place {
                    Ok(place) => Some(place),
                    Err(_) => break,
                },
                () = &mut shutdown => break,
            },
            None => None,
        };
        let io = tokio::select! {
            (io, _peer) = listener.accept() => io,
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(router.clone());
        let (api, mut stop, closed) = (api.clone(), stop_rx.clone(), closed_rx.clone());
        tokio::spawn(async move {
            let _place = place;
            let _open = api.metrics().connection_open();
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            let connection = builder.serve_connection(TokioIo::new(io), service);
            let mut connection = std::pin::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = stop.changed() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = result {
                if error.is_timeout() {
                    api.metrics().header_timed_out();
                }
                tracing::debug!(%error, "API connection ended");
            }
            drop(closed);
        });
    }
    drop(listener);
    drop(stop_tx);
    drop(closed_rx);
    closed_tx.closed().await;
}
