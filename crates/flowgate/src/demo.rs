//! `flowgate demo`: a working cloud network on this machine in one command.
//!
//! Builds the test bed of the `testbed` crate (a private Open vSwitch in
//! userspace mode, in a network namespace of its own, with hypervisor
//! bridges on a physical network, a public gateway and an external host),
//! runs `flowgate serve` in this process on a fresh SQLite store holding an
//! account, a public pool, a private network, an image and the hypervisors,
//! prints how to drive it with the AWS CLI, boto3 and boto 2 (or, with
//! `--json`, one line for scripts), and takes all of it down again on
//! SIGINT, SIGTERM or SIGHUP.
//!
//! Nothing is left behind after a clean stop: the instances' namespaces
//! (made by the netns driver outside the lab), the lab's hosts, daemons and
//! namespace, and the temporary store go. After a SIGKILL, everything is
//! still found by name: the lab's namespaces embed this process's pid and
//! the instances are plugged into the lab's bridges, so
//! `flowgate demo --sweep` (like `testbed-sweep`, and like the next demo
//! when it starts) removes it.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use ipnet::Ipv4Net;
use model::{AdminError, DriverKind, Hypervisor, State};
use serde::Serialize;
use store::{MutateError, Store};
use testbed::CloudTopology;
use testbed::topology::{EXTERNAL_HOST, EXTERNAL_NETWORK, PUBLIC_GATEWAY, PUBLIC_NETWORK};
use tokio::sync::watch;

use crate::config::Config;
use crate::serve::{OpenflowTcp, Serving};

/// `flowgate demo [--json] [--data-dir DIR] [--api-listen ADDR:PORT] [--hypervisors N] | --sweep`
#[derive(Args)]
pub struct DemoArgs {
    /// Once ready, print one JSON line on stdout (endpoint, access_key_id,
    /// secret_access_key, region, image_id, external_host, public_cidr, ...)
    /// instead of the snippets, then keep running until interrupted.
    #[arg(long)]
    pub json: bool,
    /// Keep the store in DIR, which must be new or empty, and leave it there
    /// afterwards. Default: a temporary directory removed on exit.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address and port of the EC2 API, on this machine's own network (port 0
    /// picks a free port; the endpoint printed is the real one).
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8773")]
    pub api_listen: SocketAddr,
    /// Number of hypervisor bridges (instances are spread over them).
    #[arg(long, value_name = "N", default_value_t = 2,
          value_parser = clap::value_parser!(u8).range(1..=16))]
    pub hypervisors: u8,
    /// Remove what demos (and test runs) killed with SIGKILL left behind:
    /// their namespaces, processes, instances and directories, as the
    /// testbed crate's `testbed-sweep` does. Then exit.
    #[arg(long, conflicts_with_all = ["json", "data_dir"])]
    pub sweep: bool,
}

/// The tenant account the demo creates.
const ACCOUNT: &str = "demo";
/// The image the demo registers.
const IMAGE: &str = "demo";
const IMAGE_DESCRIPTION: &str =
    "instances are network namespaces on the demo's machine, running their UserData as a shell script";
/// The private network instances get their addresses from.
const PRIVATE_NETWORK: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 1, 0, 0), 16);
const PRIVATE_GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
/// Datapath ids of the hypervisor bridges are this plus 1, 2, ...
const DATAPATH_ID_BASE: u64 = 0xde00;
/// How long the bridges get to connect and take their first flows.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the tasks of `serve` get to stop before the test bed goes.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Seconds between ARP requests for the public gateway: short, so that a
/// request lost while the bridges come up costs little.
const ARP_REFRESH_SECONDS: u64 = 5;

/// The walkthrough printed once the demo is ready, identical to the README's
/// (a unit test compares them, the end-to-end test runs the README's).
const WALKTHROUGH: &str = r#"ec2() { .venv/bin/aws --endpoint-url "$FLOWGATE_ENDPOINT" --output text ec2 "$@"; }
cat > /tmp/flowgate-web.sh <<'EOF'
#!/bin/sh
# A web server answering with the address it was reached at.
exec python3 -c '
import http.server as h
class Page(h.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"hello from %s\n" % self.connection.getsockname()[0].encode())
h.HTTPServer(("", 80), Page).serve_forever()'
EOF
SG=$(ec2 create-security-group --group-name web --description "web servers" --query GroupId)
ID=$(ec2 run-instances --image-id "$FLOWGATE_IMAGE" --security-group-ids "$SG" \
       --user-data file:///tmp/flowgate-web.sh --query 'Instances[0].InstanceId')
ec2 wait instance-running --instance-ids "$ID"
read -r ALLOC EIP <<< "$(ec2 allocate-address --domain vpc --query '[AllocationId,PublicIp]')"
ec2 associate-address --allocation-id "$ALLOC" --instance-id "$ID"
ec2 describe-instances --instance-ids "$ID" \
    --query 'Reservations[0].Instances[0].[InstanceId,PrivateIpAddress,PublicIpAddress]'
ip netns exec "$FLOWGATE_EXTERNAL" curl -s -m 3 "http://$EIP/" || echo "no answer: the group lets nothing in yet"
ec2 authorize-security-group-ingress --group-id "$SG" --protocol tcp --port 80 --cidr 0.0.0.0/0
ip netns exec "$FLOWGATE_EXTERNAL" curl -s -m 3 --retry 5 --retry-all-errors "http://$EIP/"
ec2 get-console-output --instance-id "$ID" --query Output
"#;

/// What can stop the demo from starting or from cleaning up.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Namespaces and Open vSwitch need root.
    #[error("flowgate demo needs root: it creates network namespaces and runs Open vSwitch (try sudo)")]
    NotRoot,
    /// Tools are missing.
    #[error("{0}; ./scripts/setup.sh installs them")]
    Prerequisites(testbed::Error),
    /// `--data-dir` cannot hold a fresh store.
    #[error("--data-dir {}: {reason}", path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why not.
        reason: String,
    },
    /// The API address is taken or invalid.
    #[error("cannot listen on {addr}: {source} (choose another with --api-listen; port 0 picks a free one)")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Building or taking down the test bed failed.
    #[error("test bed: {0}")]
    Testbed(#[from] testbed::Error),
    /// The store refused the demo's setup.
    #[error("setting up the store: {0}")]
    Store(String),
    /// `serve` failed.
    #[error("{0}")]
    Serve(String),
    /// The bridges did not come up in time.
    #[error(
        "the hypervisor bridges did not take their flows within {timeout:?} ({detail}); \
         Open vSwitch's log: {}", log.display()
    )]
    NotReady {
        /// How long they had.
        timeout: Duration,
        /// Where each bridge stood.
        detail: String,
        /// ovs-vswitchd's log file.
        log: PathBuf,
    },
    /// SIGINT, SIGTERM or SIGHUP during setup.
    #[error("interrupted during setup")]
    Interrupted,
    /// Signals could not be watched, or the runtime not started.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// Why it failed.
        source: std::io::Error,
    },
    /// Something could not be removed.
    #[error("could not remove everything ({0}); `flowgate demo --sweep` retries once this process is gone")]
    Teardown(String),
}

/// Runs `flowgate demo` until interrupted, then removes everything it made.
pub fn run(args: DemoArgs) -> Result<(), String> {
    if args.sweep {
        return sweep().map_err(|e| e.to_string());
    }
    crate::init_logging("warn");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| DemoError::Io {
            context: "cannot start the runtime",
            source,
        })
        .map_err(|e| e.to_string())?;
    let mut bed = Bed::default();
    let outcome = runtime.block_on(demo(&args, &mut bed));
    // The reconciler, data plane and controller stop before what they
    // manage goes, so none of them recreates an instance being removed.
    runtime.shutdown_timeout(SHUTDOWN_GRACE);
    let teardown = bed.teardown();
    match (outcome, teardown) {
        (Ok(()), Ok(())) => Ok(()),
        (Err(e), Ok(())) => Err(format!("{e}; everything it had set up is removed")),
        (Ok(()), Err(e)) => Err(e.to_string()),
        (Err(e), Err(t)) => Err(format!("{e}; {t}")),
    }
}

/// Removes the leftovers of dead demos and test runs, and says what went.
fn sweep() -> Result<(), DemoError> {
    let report = testbed::sweep_stale()?;
    for ns in &report.namespaces {
        println!("removed network namespace {ns}");
    }
    for dir in &report.directories {
        println!("removed directory {}", dir.display());
    }
    if report.is_empty() {
        println!("nothing to sweep");
    }
    if report.failures.is_empty() {
        Ok(())
    } else {
        Err(DemoError::Teardown(report.failures.join("; ")))
    }
}

/// Says what the demo is doing, on stderr (stdout is for the result).
fn progress(message: &str) {
    let _ = writeln!(std::io::stderr(), "flowgate demo: {message}");
}

/// Everything the demo set up that must go when it stops, whatever the
/// reason (a signal, a failed step, a panic).
#[derive(Default)]
struct Bed {
    topology: Option<CloudTopology>,
    store: Option<Store>,
    /// The data directory when the user chose it (kept on exit).
    kept_data_dir: Option<PathBuf>,
    done: bool,
}

impl Bed {
    /// Removes the instances' namespaces and the test bed. Runs once.
    fn teardown(&mut self) -> Result<(), DemoError> {
        if self.done {
            return Ok(());
        }
        self.done = true;
        let mut errors = Vec::new();
        // The netns driver's namespaces live outside the lab. Those plugged
        // into its bridges go with the lab anyway; the store also names any
        // created but not yet plugged when the demo stopped.
        let instances = self
            .store
            .take()
            .map(|s| instance_namespaces(&s.read()))
            .unwrap_or_default();
        if let Some(topology) = self.topology.take() {
            progress(&format!(
                "stopping: removing {} instance namespace(s) and the test bed (namespace {})",
                instances.len(),
                topology.lab.name()
            ));
            for ns in &instances {
                if let Err(e) = testbed::delete_netns(ns) {
                    errors.push(e.to_string());
                }
            }
            if let Err(e) = topology.lab.shutdown() {
                errors.push(e.to_string());
            }
            if errors.is_empty() {
                progress("stopped; no namespace, bridge, port or daemon of the demo is left");
            }
        }
        if let Some(dir) = &self.kept_data_dir {
            progress(&format!("the store stays in {}", dir.display()));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(DemoError::Teardown(errors.join("; ")))
        }
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        // Only reached without a teardown when unwinding from a panic.
        if let Err(e) = self.teardown() {
            progress(&e.to_string());
        }
    }
}

/// The namespaces of every instance placed on a hypervisor: the netns
/// driver names them after the instance's interface.
fn instance_namespaces(state: &State) -> Vec<String> {
    state
        .tenants()
        .flat_map(|t| t.instances.values())
        .filter(|i| i.hypervisor.is_some())
        .map(|i| i.interface_name.clone())
        .collect()
}

/// Sets the demo up, reports it ready, and serves until a signal.
async fn demo(args: &DemoArgs, bed: &mut Bed) -> Result<(), DemoError> {
    // Watched before anything is built: from here on a signal no longer
    // kills the process but asks for an orderly stop.
    let mut stop = watch_signals()?;
    check_machine()?;
    if let Some(dir) = &args.data_dir {
        check_data_dir(dir)?;
    }
    // Bound first, so a taken port fails before anything is built.
    let listener = tokio::net::TcpListener::bind(args.api_listen)
        .await
        .map_err(|source| DemoError::Listen {
            addr: args.api_listen,
            source,
        })?;
    let api_addr = listener.local_addr().map_err(|source| DemoError::Listen {
        addr: args.api_listen,
        source,
    })?;

    let hypervisors = usize::from(args.hypervisors);
    progress(&format!(
        "starting a private Open vSwitch (userspace datapath, in a network namespace of its own) \
         with {hypervisors} hypervisor bridge(s), the physical network, a public gateway and an external host"
    ));
    let started = Instant::now();
    let (topology, interrupted) = blocking(&mut stop, move || {
        CloudTopology::start(hypervisors, DATAPATH_ID_BASE)
    })
    .await;
    let topology = bed.topology.insert(topology?);
    if interrupted {
        return Err(DemoError::Interrupted);
    }
    progress(&format!(
        "test bed up in {:.1} s (network namespace {})",
        started.elapsed().as_secs_f64(),
        topology.lab.name()
    ));

    let data_dir = match &args.data_dir {
        Some(dir) => {
            bed.kept_data_dir = Some(dir.clone());
            dir.clone()
        }
        // Inside the lab's directory: removed with the lab, and by the
        // sweep after a SIGKILL.
        None => topology.lab.run_dir().join("store"),
    };
    let socket = topology.lab.run_dir().join("flowgate-of.sock");
    let config = demo_config(&data_dir, api_addr, &socket);
    progress(&format!("opening the store in {}", data_dir.display()));
    let store = crate::serve::open_store(&config)
        .await
        .map_err(DemoError::Store)?;
    bed.store = Some(store.clone());
    let seeded = seed(&store, &config, topology).await?;
    progress(&format!(
        "registered account {ACCOUNT}, public pool {}, private network {}, image {}, hypervisors {}",
        cidr(PUBLIC_NETWORK),
        cidr(PRIVATE_NETWORK),
        seeded.image_id,
        bridge_names(topology).join(", ")
    ));

    let serving = Serving::start(&config, store, listener, OpenflowTcp::Off)
        .await
        .map_err(DemoError::Serve)?;
    let controller = serving.controller().clone();
    let mut api = tokio::spawn(serving.run(stopped(stop.clone())));
    progress(&format!(
        "flowgate serve is up (EC2 API on {api_addr}, OpenFlow on unix:{}); connecting the bridges",
        socket.display()
    ));
    let target = format!("unix:{}", socket.display());
    let lab_topology = &*topology;
    tokio::task::block_in_place(|| lab_topology.connect_controller(&target))?;

    tokio::select! {
        ready = wait_ready(&controller, topology, &mut stop) => ready?,
        served = &mut api => {
            return Err(match served {
                Ok(Ok(())) => DemoError::Interrupted,
                Ok(Err(e)) => DemoError::Serve(e),
                Err(e) => DemoError::Serve(format!("the API task failed: {e}")),
            });
        }
    }

    let ready = Ready::new(api_addr, &config, &seeded, topology, &data_dir);
    print_ready(&ready, args.json)?;
    progress("ready; Ctrl-C stops the demo and removes everything it made");
    match api.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(DemoError::Serve(e)),
        Err(e) => Err(DemoError::Serve(format!("the API task failed: {e}"))),
    }
}

/// The configuration `serve` runs with in the demo: the store in
/// `data_dir`, the API on `api`, switches on a Unix socket only, no
/// metrics endpoint (nothing of the machine's own ports but the API's).
fn demo_config(data_dir: &Path, api: SocketAddr, socket: &Path) -> Config {
    let mut config = Config {
        data_dir: data_dir.to_path_buf(),
        ..Config::default()
    };
    config.api.listen = api;
    config.openflow.unix_sockets = vec![socket.to_path_buf()];
    config.metrics.listen = String::new();
    config.network.arp_refresh_seconds = ARP_REFRESH_SECONDS;
    config
}

/// Fails early, with advice, where the demo cannot work.
fn check_machine() -> Result<(), DemoError> {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the effective user. Unreadable: let the tools
    // say what they lack.
    if std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() != 0) {
        return Err(DemoError::NotRoot);
    }
    testbed::check_prerequisites().map_err(DemoError::Prerequisites)
}

/// A data directory given by the user must be new or empty: the demo sets
/// up a fresh store and would not know what to make of an old one.
fn check_data_dir(dir: &Path) -> Result<(), DemoError> {
    let reason = match std::fs::read_dir(dir).map(|mut entries| entries.next().is_none()) {
        Ok(true) => return Ok(()),
        Ok(false) => {
            "it is not empty; the demo sets up a fresh store (give a new or empty directory)".to_owned()
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => e.to_string(),
    };
    Err(DemoError::DataDir {
        path: dir.to_path_buf(),
        reason,
    })
}

/// Watches SIGINT, SIGTERM and SIGHUP (a closed terminal); the receiver
/// turns true at the first.
fn watch_signals() -> Result<watch::Receiver<bool>, DemoError> {
    use tokio::signal::unix::{SignalKind, signal};
    let io = |source| DemoError::Io {
        context: "cannot watch signals",
        source,
    };
    let mut interrupt = signal(SignalKind::interrupt()).map_err(io)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(io)?;
    let mut hangup = signal(SignalKind::hangup()).map_err(io)?;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        loop {
            let name = tokio::select! {
                _ = interrupt.recv() => "SIGINT",
                _ = terminate.recv() => "SIGTERM",
                _ = hangup.recv() => "SIGHUP",
            };
            if *tx.borrow() {
                progress(&format!("{name}: already stopping"));
            } else {
                progress(&format!("{name}: stopping"));
            }
            tx.send_replace(true);
        }
    });
    Ok(rx)
}

/// Completes once a stop was asked for.
async fn stopped(mut stop: watch::Receiver<bool>) {
    // An error means the watcher is gone, which only happens when the
    // runtime stops: stopping is right then too.
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Runs a blocking step on its own thread. A signal does not cut it short
/// (half-built state would escape the teardown); it is awaited to the end
/// and reported, so the caller tears down what it built.
async fn blocking<T: Send + 'static>(
    stop: &mut watch::Receiver<bool>,
    step: impl FnOnce() -> T + Send + 'static,
) -> (T, bool) {
    let mut handle = tokio::task::spawn_blocking(step);
    let mut interrupted = false;
    let result = tokio::select! {
        result = &mut handle => result,
        () = stopped(stop.clone()) => {
            interrupted = true;
            progress("finishing the current step before tearing down");
            handle.await
        }
    };
    match result {
        Ok(value) => (value, interrupted || *stop.borrow()),
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// What the demo registered in the store.
struct Seeded {
    account_id: String,
    access_key_id: String,
    secret_access_key: String,
    image_id: String,
    subnet_id: String,
}

fn cidr((addr, prefix): (Ipv4Addr, u8)) -> String {
    format!("{addr}/{prefix}")
}

fn net((addr, prefix): (Ipv4Addr, u8)) -> Result<Ipv4Net, DemoError> {
    Ipv4Net::new(addr, prefix).map_err(|e| DemoError::Store(e.to_string()))
}

fn bridge_names(topology: &CloudTopology) -> Vec<String> {
    topology.hypervisors.iter().map(|h| h.name.clone()).collect()
}

/// Runs one model operation as its own transaction.
async fn mutate<T: Send + 'static>(
    store: &Store,
    operation: impl FnOnce(&mut State, &mut dyn model::Entropy) -> Result<T, AdminError> + Send + 'static,
) -> Result<T, DemoError> {
    store
        .mutate(move |state| operation(state, &mut ec2api::actions::OsEntropy))
        .await
        .map_err(|e| match e {
            MutateError::Rejected(e) => DemoError::Store(e.to_string()),
            MutateError::Storage(e) => DemoError::Store(e.to_string()),
        })
}

/// Registers what `flowgate admin` would for this test bed: an account
/// with keys, the public network as a pool, a private network, an image,
/// and every hypervisor bridge with the netns driver (the lab's database
/// and namespace, where the bridges' ovs-vswitchd runs).
async fn seed(store: &Store, config: &Config, topology: &CloudTopology) -> Result<Seeded, DemoError> {
    let (account, key) = mutate(store, |s, e| {
        s.create_account(ACCOUNT, ec2api::actions::now_ms(), e)
    })
    .await?;
    let public = net(PUBLIC_NETWORK)?;
    mutate(store, move |s, e| s.add_pool(public, PUBLIC_GATEWAY, None, e)).await?;
    let private = net(PRIVATE_NETWORK)?;
    let network = mutate(store, move |s, e| {
        s.add_network(private, PRIVATE_GATEWAY, None, e)
    })
    .await?;
    let image = mutate(store, |s, e| s.add_image(IMAGE, IMAGE_DESCRIPTION, e)).await?;
    let ovsdb = format!("unix:{}", topology.lab.db_socket().display());
    for hv in &topology.hypervisors {
        let hypervisor = Hypervisor {
            name: hv.name.clone(),
            bridge: Some(hv.name.clone()),
            datapath_id: None,
            uplink: hv.uplink.clone(),
            driver: DriverKind::Netns,
            ovsdb: Some(ovsdb.clone()),
            netns: Some(topology.lab.name().to_owned()),
            zone: config.api.zone.clone(),
        };
        mutate(store, move |s, _| s.add_hypervisor(hypervisor)).await?;
    }
    Ok(Seeded {
        account_id: account.id.as_str().to_owned(),
        access_key_id: key.access_key_id,
        secret_access_key: key.secret_access_key,
        image_id: image.id.as_str().to_owned(),
        subnet_id: network.id.as_str().to_owned(),
    })
}

/// Waits until every hypervisor bridge is connected and holds the flows
/// flowgate compiled for it, so that the first instance works at once.
async fn wait_ready(
    controller: &controller::Controller,
    topology: &CloudTopology,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), DemoError> {
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    loop {
        let mut waiting = Vec::new();
        for hv in &topology.hypervisors {
            match controller.switch(hv.datapath_id) {
                None => waiting.push(format!("{} not connected", hv.name)),
                Some(s) if s.flows_desired == 0 || s.flows_installed != s.flows_desired => {
                    waiting.push(format!(
                        "{} holds {} of {} flows",
                        hv.name, s.flows_installed, s.flows_desired
                    ))
                }
                Some(_) => {}
            }
        }
        if waiting.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(DemoError::NotReady {
                timeout: READY_TIMEOUT,
                detail: waiting.join(", "),
                log: topology.lab.vswitchd_log(),
            });
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
            () = stopped(stop.clone()) => return Err(DemoError::Interrupted),
        }
    }
}

/// What scripts need to know once the demo is ready: the `--json` line.
#[derive(Debug, Serialize)]
struct Ready {
    endpoint: String,
    region: String,
    zone: String,
    account_id: String,
    access_key_id: String,
    secret_access_key: String,
    image_id: String,
    subnet_id: String,
    private_cidr: String,
    public_cidr: String,
    public_gateway: String,
    /// The external host's network namespace.
    external_host: String,
    external_ip: String,
    external_cidr: String,
    /// The public gateway's network namespace.
    gateway_host: String,
    /// The lab's network namespace, where Open vSwitch runs.
    lab_netns: String,
    ovsdb: String,
    ovs_rundir: String,
    bridges: Vec<String>,
    physical_bridge: String,
    data_dir: String,
    pid: u32,
    /// The shell variables the walkthrough uses.
    env: BTreeMap<&'static str, String>,
    /// Where clients connect.
    #[serde(skip)]
    client_addr: SocketAddr,
}

/// The shell variables the walkthrough uses, by name.
fn exports(
    access_key_id: &str,
    secret_access_key: &str,
    region: &str,
    endpoint: &str,
    image_id: &str,
    external_host: &str,
) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("AWS_ACCESS_KEY_ID", access_key_id.to_owned()),
        ("AWS_SECRET_ACCESS_KEY", secret_access_key.to_owned()),
        ("AWS_DEFAULT_REGION", region.to_owned()),
        ("FLOWGATE_ENDPOINT", endpoint.to_owned()),
        ("FLOWGATE_IMAGE", image_id.to_owned()),
        ("FLOWGATE_EXTERNAL", external_host.to_owned()),
    ])
}

impl Ready {
    fn new(
        api: SocketAddr,
        config: &Config,
        seeded: &Seeded,
        topology: &CloudTopology,
        data_dir: &Path,
    ) -> Ready {
        let client_addr = client_addr(api);
        let endpoint = format!("http://{client_addr}");
        let region = config.api.region.clone();
        let external_host = topology.external.netns().to_owned();
        let env = exports(
            &seeded.access_key_id,
            &seeded.secret_access_key,
            &region,
            &endpoint,
            &seeded.image_id,
            &external_host,
        );
        Ready {
            client_addr,
            endpoint,
            region,
            zone: config.api.zone.clone(),
            account_id: seeded.account_id.clone(),
            access_key_id: seeded.access_key_id.clone(),
            secret_access_key: seeded.secret_access_key.clone(),
            image_id: seeded.image_id.clone(),
            subnet_id: seeded.subnet_id.clone(),
            private_cidr: cidr(PRIVATE_NETWORK),
            public_cidr: cidr(PUBLIC_NETWORK),
            public_gateway: PUBLIC_GATEWAY.to_string(),
            external_host,
            external_ip: EXTERNAL_HOST.to_string(),
            external_cidr: cidr(EXTERNAL_NETWORK),
            gateway_host: topology.gateway.netns().to_owned(),
            lab_netns: topology.lab.name().to_owned(),
            ovsdb: format!("unix:{}", topology.lab.db_socket().display()),
            ovs_rundir: topology.lab.run_dir().display().to_string(),
            bridges: bridge_names(topology),
            physical_bridge: CloudTopology::PHYSICAL_BRIDGE.to_owned(),
            data_dir: data_dir.display().to_string(),
            pid: std::process::id(),
            env,
        }
    }
}

/// Where clients connect: an unspecified listen address (0.0.0.0) is
/// reached on the loopback.
fn client_addr(api: SocketAddr) -> SocketAddr {
    let ip = match api.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, api.port())
}

/// Prints the JSON line or the snippets on stdout, flushed at once: a
/// script reading a pipe must not wait for more.
fn print_ready(ready: &Ready, json: bool) -> Result<(), DemoError> {
    let text = if json {
        let line = serde_json::to_string(ready).map_err(|e| DemoError::Serve(e.to_string()))?;
        format!("{line}\n")
    } else {
        instructions(ready)
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|source| DemoError::Io {
            context: "cannot write to stdout",
            source,
        })
}

/// Quotes a word for a POSIX shell when it needs it.
fn shell_word(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=+@%,".contains(c))
    {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The snippets for people: what runs where, the variables to export, the
/// walkthrough of the seed scenario, and boto3 and boto 2 to start from.
fn instructions(r: &Ready) -> String {
    let exports: Vec<String> = r
        .env
        .iter()
        .map(|(k, v)| format!("{k}={}", shell_word(v)))
        .collect();
    format!(
        r#"
flowgate demo is ready: a private Open vSwitch (network namespace {lab}) with hypervisor
bridges {bridges} on a physical network, a public gateway and an external host,
managed by flowgate serve. Ctrl-C (here) stops it and removes all of it.

  EC2 endpoint       {endpoint}  (region {region}, zone {zone})
  access key id      {key}
  secret access key  {secret}
  image              {image}  (instances are network namespaces running their UserData)
  Elastic IPs from   {public}
  private network    {private} ({subnet})
  external host      {external_ip} in network namespace {external}
  store              {data_dir}  (flowgate admin --data-dir {data_dir} instance list)

1. In a root shell at the repository's root (bash), export the keys and names:

export {exports}

2. The seed scenario with the AWS CLI of the repository's venv (scripts/setup.sh made it):
   a web server instance, an Elastic IP, a security group opened for tcp 80.

{walkthrough}
3. The external host (on the internet side of the public gateway) reaches the instance
   through its Elastic IP; a shell there:

ip netns exec {external} curl -s http://$EIP/
ip netns exec {external} bash

boto3 (.venv/bin/python):

import boto3
ec2 = boto3.client("ec2", endpoint_url="{endpoint}", region_name="{region}",
                   aws_access_key_id="{key}", aws_secret_access_key="{secret}")
print(ec2.describe_addresses()["Addresses"])

boto 2 (.venv/bin/python), as in the 2012 seed:

import boto
from boto.ec2.regioninfo import RegionInfo
conn = boto.connect_ec2(aws_access_key_id="{key}", aws_secret_access_key="{secret}",
                        is_secure=False, port={port}, path="/",
                        region=RegionInfo(name="{region}", endpoint="{host}"))
address = conn.allocate_address()
sg = conn.create_security_group("Test Group", "Description of Test Group")
sg.authorize("tcp", 80, 80, "0.0.0.0/0")

If this process is killed with SIGKILL, `flowgate demo --sweep` (or the testbed crate's
testbed-sweep) removes what it left; so does the next `flowgate demo` when it starts.
"#,
        lab = r.lab_netns,
        bridges = r.bridges.join(", "),
        endpoint = r.endpoint,
        region = r.region,
        zone = r.zone,
        key = r.access_key_id,
        secret = r.secret_access_key,
        image = r.image_id,
        public = r.public_cidr,
        private = r.private_cidr,
        subnet = r.subnet_id,
        external_ip = r.external_ip,
        external = r.external_host,
        data_dir = r.data_dir,
        exports = exports.join(" "),
        walkthrough = WALKTHROUGH,
        host = r.client_addr.ip(),
        port = r.client_addr.port(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first ```sh block after the README's "## Try it" heading.
    fn readme_walkthrough() -> String {
        let readme = include_str!("../../../README.md");
        let section = readme
            .split_once("\n## Try it\n")
            .map(|(_, rest)| rest)
            .expect("README.md has a '## Try it' section");
        let block = section
            .split("```sh\n")
            .nth(2)
            .and_then(|rest| rest.split_once("```\n"))
            .map(|(block, _)| block)
            .expect("its second sh block is the walkthrough");
        block.to_owned()
    }

    fn sample() -> Ready {
        let client_addr = client_addr("0.0.0.0:8773".parse().expect("address"));
        Ready {
            client_addr,
            endpoint: format!("http://{client_addr}"),
            region: "flowgate-1".into(),
            zone: "flowgate-1a".into(),
            account_id: "123456789012".into(),
            access_key_id: "AKIAEXAMPLE".into(),
            secret_access_key: "se/cr+et".into(),
            image_id: "ami-0123456789abcdef0".into(),
            subnet_id: "subnet-0123456789abcdef0".into(),
            private_cidr: cidr(PRIVATE_NETWORK),
            public_cidr: cidr(PUBLIC_NETWORK),
            public_gateway: PUBLIC_GATEWAY.to_string(),
            external_host: "fgt-1-0-ext".into(),
            external_ip: EXTERNAL_HOST.to_string(),
            external_cidr: cidr(EXTERNAL_NETWORK),
            gateway_host: "fgt-1-0-gw".into(),
            lab_netns: "fgt-1-0".into(),
            ovsdb: "unix:/tmp/x/db.sock".into(),
            ovs_rundir: "/tmp/x".into(),
            bridges: vec!["hv1".into(), "hv2".into()],
            physical_bridge: "phys".into(),
            data_dir: "/tmp/x/store".into(),
            pid: 1,
            env: BTreeMap::from([
                ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE".to_owned()),
                ("FLOWGATE_EXTERNAL", "fgt-1-0-ext".to_owned()),
                ("ODD", "it's".to_owned()),
            ]),
        }
    }

    #[test]
    fn the_readme_walks_through_what_the_demo_prints() {
        assert_eq!(readme_walkthrough(), WALKTHROUGH);
    }

    #[test]
    fn the_walkthrough_uses_only_variables_the_demo_exports() {
        let env = exports("k", "s", "r", "e", "i", "x");
        let mut used = 0;
        for var in WALKTHROUGH.split('$').skip(1) {
            let name: String = var
                .trim_start_matches('{')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let set_by_walkthrough = ["SG", "ID", "ALLOC", "EIP"].contains(&name.as_str());
            assert!(
                name.is_empty() || set_by_walkthrough || env.contains_key(name.as_str()),
                "the walkthrough uses ${name}, which the demo does not export"
            );
            used += usize::from(env.contains_key(name.as_str()));
        }
        assert!(used >= 3, "the walkthrough should use the exported variables");
    }

    #[test]
    fn the_snippets_carry_the_endpoint_keys_and_names() {
        let ready = sample();
        assert_eq!(ready.endpoint, "http://127.0.0.1:8773");
        let text = instructions(&ready);
        assert!(
            text.contains(
                "export AWS_ACCESS_KEY_ID=AKIAEXAMPLE FLOWGATE_EXTERNAL=fgt-1-0-ext ODD='it'\\''s'\n"
            )
        );
        assert!(text.contains(WALKTHROUGH));
        assert!(text.contains(r#"endpoint_url="http://127.0.0.1:8773""#));
        assert!(text.contains(r#"port=8773, path="/""#) && text.contains(r#"endpoint="127.0.0.1""#));
        assert!(text.contains("ip netns exec fgt-1-0-ext curl"));
        assert!(text.contains("ip netns exec fgt-1-0-ext bash"));
        assert!(text.contains("--sweep"));
        let json = serde_json::to_value(&ready).expect("json");
        for field in [
            "endpoint",
            "access_key_id",
            "secret_access_key",
            "image_id",
            "external_host",
            "public_cidr",
            "region",
        ] {
            assert!(json[field].is_string(), "{field} missing from {json}");
        }
    }

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(shell_word("AKIA0/+x="), "AKIA0/+x=");
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word(""), "''");
        assert_eq!(
            client_addr("[::]:80".parse().expect("address")).to_string(),
            "[::1]:80"
        );
    }

    #[test]
    fn a_data_dir_must_be_new_or_empty() {
        let dir = std::env::temp_dir().join(format!("flowgate-demo-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(check_data_dir(&dir).is_ok());
        std::fs::create_dir_all(&dir).expect("mkdir");
        assert!(check_data_dir(&dir).is_ok());
        std::fs::write(dir.join("x"), b"").expect("write");
        let refused = check_data_dir(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(matches!(refused, Err(DemoError::DataDir { .. })), "{refused:?}");
    }
}
