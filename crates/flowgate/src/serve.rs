//! `flowgate serve`: everything in one process until SIGINT or SIGTERM: the
//! store, the EC2 API, the compute reconciler, the OpenFlow controller the
//! hypervisors' bridges connect to, the data plane that compiles the model
//! into their flows, and the Prometheus `/metrics` endpoint.

use std::net::SocketAddr;
use std::sync::Arc;

use clap::Args;
use controller::{Controller, ListenAddr, Listener, RoleClaim};
use ec2api::Api;
use ec2api::compute::ComputeDriver;
use store::Store;
use store::election::Leadership;
use tokio::sync::watch;

use crate::config::Config;

/// `flowgate serve [--config FILE] [--data-dir DIR] [--store URL] [--api-listen ADDR:PORT] [--openflow-listen ADDR:PORT]`
#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: crate::admin::StoreArgs,
    /// Address and port of the EC2 Query API (overrides `api.listen`; default 127.0.0.1:8773).
    #[arg(long, value_name = "ADDR:PORT")]
    pub api_listen: Option<SocketAddr>,
    /// Address and port switches connect to (overrides `openflow.listen`; default 127.0.0.1:6653).
    #[arg(long, value_name = "ADDR:PORT")]
    pub openflow_listen: Option<SocketAddr>,
}

/// Loads the configuration with the flags applied on top.
pub fn effective_config(args: &ServeArgs) -> Result<Config, String> {
    let mut config = args.store.config()?;
    if let Some(listen) = args.api_listen {
        config.api.listen = listen;
    }
    if let Some(listen) = args.openflow_listen {
        config.openflow.listen = listen.to_string();
    }
    Ok(config)
}

/// Runs the server until interrupted.
pub fn run(args: ServeArgs) -> Result<(), String> {
    let config = effective_config(&args)?;
    crate::init_logging(&config.log.level);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(serve(config))
}

async fn serve(config: Config) -> Result<(), String> {
    let store = open_store(&config).await?;
    let listener = tokio::net::TcpListener::bind(config.api.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.api.listen))?;
    let serving = Serving::start(&config, store, listener, OpenflowTcp::Listen).await?;
    serving.run(shutdown_signal()).await?;
    tracing::info!("flowgate stopped");
    Ok(())
}

/// Opens the store where the configuration says (SQLite in the data
/// directory, or PostgreSQL).
pub(crate) async fn open_store(config: &Config) -> Result<Store, String> {
    let store = config.open_store().await?;
    tracing::info!(
        data_dir = %config.data_dir.display(),
        store = %config.store_location()?.describe(),
        revision = store.revision(),
        "store open"
    );
    Ok(store)
}

/// Whether the controller listens on `openflow.listen` besides its Unix
/// sockets. `flowgate demo` reaches its bridges through a Unix socket only,
/// so that it never takes a port another controller on the machine uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpenflowTcp {
    /// Listen on `openflow.listen` too.
    Listen,
    /// Unix sockets only.
    Off,
}

/// `flowgate serve` started: the compute reconciler, the OpenFlow
/// controller, the data plane and the metrics endpoint run as tasks of the
/// current runtime; the EC2 API answers once [`Serving::run`] is awaited.
pub(crate) struct Serving {
    api: Arc<Api>,
    listener: tokio::net::TcpListener,
    /// HTTPS, when `api.tls_cert` is set.
    api_tls: Option<Arc<tls::ServerConfig>>,
    controller: Controller,
}

impl Serving {
    /// Starts everything but the API on `store`, which the API will answer
    /// from `listener` (bound by the caller, so that it can report the
    /// address it got and fail before anything else started).
    pub(crate) async fn start(
        config: &Config,
        store: Store,
        listener: tokio::net::TcpListener,
        openflow_tcp: OpenflowTcp,
    ) -> Result<Serving, String> {
        let mut api_config = config.api_config();
        // Certificates are read before anything starts: a bad file stops
        // serve here, with its name.
        let api_tls = config.api_tls()?;
        // The address actually bound: port 0 in the configuration means any.
        let bound = listener
            .local_addr()
            .map_err(|e| format!("cannot read the API listener's address: {e}"))?;
        if config.api.endpoint.is_empty() {
            api_config.endpoint = bound.to_string();
        }
        api_config.listen = bound;
        api_config.limits.max_connections = connections_within_open_files(api_config.limits.max_connections);
        // Instances placed on a hypervisor are started by its driver (netns
        // or external); instances placed nowhere stay records.
        let driver: Arc<dyn ComputeDriver> =
            compute::Drivers::new(store.clone(), config.data_dir.join("instances"));
        // On PostgreSQL, nodes elect the switches' master; the role is known
        // (or bounded in waiting) before the first switch connects.
        let leadership = crate::nodes::join(config, bound.port()).await?;
        let controller =
            start_controller(config, openflow_tcp, crate::nodes::claim(leadership.as_ref())).await?;
        // The compute reconciler runs on the leader only: two nodes
        // launching one instance would race.
        let compute = {
            let (store, driver) = (store.clone(), driver.clone());
            let retention = api_config.terminated_retention;
            move || {
                tokio::spawn(ec2api::compute::reconcile(
                    store.clone(),
                    driver.clone(),
                    retention,
                    ec2api::compute::OBSERVE_INTERVAL,
                ))
            }
        };
        // /metrics shows the election too: a receiver of its own.
        let election = leadership.clone();
        crate::nodes::follow(leadership, controller.clone(), compute);
        // Ports of external hypervisors may name their instance only in
        // external_ids:iface-id, which only the hypervisor's database tells.
        let (iface_ids_tx, iface_ids_rx) = tokio::sync::watch::channel(dataplane::IfaceIds::new());
        tokio::spawn(compute::iface_ids::watch_iface_ids(
            store.clone(),
            iface_ids_tx,
            compute::iface_ids::POLL_INTERVAL,
        ));
        tokio::spawn(dataplane::run(
            store.clone(),
            controller.clone(),
            config.dataplane_config(),
            iface_ids_rx,
        ));
        let counters = Arc::new(crate::counters::SwitchCounters::new(
            store.clone(),
            controller.clone(),
        ));
        let api = Arc::new(
            Api::new(store.clone(), api_config.clone())
                .with_console(driver.clone())
                .with_rule_counters(counters),
        );
        if let Some(addr) = config.metrics_listen()? {
            let sources = MetricsSources {
                controller: controller.clone(),
                api: api.clone(),
                store,
                election,
            };
            start_metrics(addr, sources).await?;
        }
        // The OpenFlow listeners were each logged as they started.
        tracing::info!(
            api = %api_config.listen,
            https = api_tls.is_some(),
            region = %api_config.region,
            "flowgate serving"
        );
        Ok(Serving {
            api,
            listener,
            api_tls,
            controller,
        })
    }

    /// The OpenFlow controller the hypervisors' bridges connect to.
    pub(crate) fn controller(&self) -> &Controller {
        &self.controller
    }

    /// Answers the EC2 API until `shutdown` completes, then lets requests
    /// in flight finish. The other parts run until the runtime stops.
    pub(crate) async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), String> {
        match self.api_tls {
            Some(tls) => ec2api::serve_tls(self.api, self.listener, tls, shutdown).await,
            None => ec2api::serve(self.api, self.listener, shutdown).await,
        }
        .map_err(|e| format!("API server failed: {e}"))
    }
}

/// Open files kept for all but API connections: the store, switches'
/// sessions, the metrics endpoint, instances' consoles.
const FILES_RESERVED: usize = 256;

/// `max_connections` (0: no bound) lowered, if need be, to what the
/// process's open files limit (`ulimit -n`, systemd's `LimitNOFILE`)
/// leaves room for: past it, accepting would fail, and so would everything
/// else that opens a file.
fn connections_within_open_files(max_connections: usize) -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let Some(open_files) = soft_open_files_limit(&limits) else {
        return max_connections;
    };
    let room = open_files.saturating_sub(FILES_RESERVED).max(1);
    if max_connections == 0 || max_connections <= room {
        return max_connections;
    }
    // Info, not a warning: with a shell's usual limit (1024) this is how
    // the demo and a first `serve` run, and they need no more.
    tracing::info!(
        configured = max_connections,
        open_files,
        allowed = room,
        "api.max_connections lowered to fit the open files limit; raise the limit (ulimit -n, LimitNOFILE) for more"
    );
    room
}

/// The soft "Max open files" of a `/proc/PID/limits` text; `None` when it
/// is unlimited or not there.
fn soft_open_files_limit(limits: &str) -> Option<usize> {
    let line = limits.lines().find(|line| line.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Starts the OpenFlow controller on the configured Unix sockets, TLS
/// address and, unless told otherwise, TCP address.
async fn start_controller(config: &Config, tcp: OpenflowTcp, role: RoleClaim) -> Result<Controller, String> {
    let controller = Controller::new(controller::ControllerConfig {
        role,
        ..config.controller_config()
    });
    let mut addresses = Vec::new();
    if tcp == OpenflowTcp::Listen {
        addresses.extend(config.openflow_listen()?.map(ListenAddr::Tcp));
    }
    addresses.extend(config.openflow.unix_sockets.iter().cloned().map(ListenAddr::Unix));
    let tls = config.openflow_tls()?;
    addresses.extend(tls.as_ref().map(|(addr, _)| ListenAddr::Tls(*addr)));
    if addresses.is_empty() {
        return Err(
            "no OpenFlow listener: no switch could connect (set openflow.listen, openflow.tls_listen or openflow.unix_sockets)"
                .into(),
        );
    }
    for addr in addresses {
        let bound = match (&addr, &tls) {
            (ListenAddr::Tls(a), Some((_, tls))) => Listener::bind_tls(*a, tls.clone()).await,
            _ => Listener::bind(&addr).await,
        };
        let listener = bound.map_err(|e| format!("cannot listen for switches on {addr}: {e}"))?;
        tracing::info!(%addr, "OpenFlow controller listening");
        let c = controller.clone();
        tokio::spawn(async move {
            if let Err(err) = c.serve(listener).await {
                tracing::error!(%addr, error = %err, "OpenFlow listener failed");
            }
        });
    }
    Ok(controller)
}

/// Everything `/metrics` shows.
#[derive(Clone)]
struct MetricsSources {
    controller: Controller,
    api: Arc<Api>,
    store: Store,
    /// This node's part in the election, on PostgreSQL.
    election: Option<watch::Receiver<Leadership>>,
}

impl MetricsSources {
    /// Every metric in the Prometheus text format: the controller's, the
    /// API's, the store's and, on PostgreSQL, the election's.
    fn render(&self) -> String {
        let mut text = metrics::Text::new();
        self.controller.write_metrics(&mut text);
        self.api.metrics().write(&mut text);
        self.store.write_metrics(&mut text);
        if let Some(election) = &self.election {
            store::election::write_metrics(*election.borrow(), &mut text);
        }
        text.finish()
    }
}

/// Serves the metrics of `sources` in the Prometheus text format.
async fn start_metrics(addr: SocketAddr, sources: MetricsSources) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen for metrics on {addr}: {e}"))?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let sources = sources.clone();
            async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    sources.render(),
                )
            }
        }),
    );
    tracing::info!(%addr, "metrics at /metrics");
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            tracing::error!(error = %err, "metrics endpoint failed");
        }
    });
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(err) => {
            tracing::warn!(error = %err, "cannot watch SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use super::soft_open_files_limit;

    #[test]
    fn the_soft_open_files_limit_is_read_from_proc_limits() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             95925                95925                processes \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(soft_open_files_limit(limits), Some(1024));
        let unlimited = limits.replace("1024                 524288", "unlimited            unlimited");
        assert_eq!(soft_open_files_limit(&unlimited), None);
        assert_eq!(soft_open_files_limit(""), None);
    }
}
