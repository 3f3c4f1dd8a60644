//! flowgate's configuration: a TOML file whose every setting has a
//! default, overridden by command-line flags (flags > file > defaults).
//! `docs/flowgate.example.toml` documents every setting.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

/// The default configuration file, read when it exists and no `--config` is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/flowgate/flowgate.toml";

/// The whole configuration as the file holds it.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the store (and later other state) lives.
    pub data_dir: PathBuf,
    /// The EC2 API.
    pub api: ApiSection,
    /// The OpenFlow controller.
    pub openflow: OpenflowSection,
    /// The data plane: public gateway, gratuitous ARP.
    pub network: NetworkSection,
    /// The Prometheus endpoint.
    pub metrics: MetricsSection,
    /// The store.
    pub store: StoreSection,
    /// Several nodes on one PostgreSQL store.
    pub nodes: NodesSection,
    /// Logging.
    pub log: LogSection,
}

/// `[api]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSection {
    /// Address and port of the EC2 Query API.
    pub listen: SocketAddr,
    /// Region name (DescribeRegions; clients sign with any region).
    pub region: String,
    /// Default availability zone.
    pub zone: String,
    /// Endpoint shown by DescribeRegions; empty = derived from `listen`.
    pub endpoint: String,
    /// Elastic IPs an account may hold (AddressLimitExceeded beyond).
    pub addresses_per_account: usize,
    /// Allowed difference between a request's signing time and ours.
    pub clock_skew_seconds: u64,
    /// How long terminated instances stay listed.
    pub terminated_retention_seconds: u64,
    /// HTTPS: the server's certificate chain (PEM); empty for plain HTTP.
    pub tls_cert: PathBuf,
    /// HTTPS: the certificate's private key (PEM).
    pub tls_key: PathBuf,
    /// Each account's sustained rate of actions that change nothing
    /// (`Describe*`), per second; 0 for no limit.
    pub read_requests_per_second: f64,
    /// Each account's burst of such actions.
    pub read_request_burst: u32,
    /// Each account's sustained rate of actions that change something.
    pub write_requests_per_second: f64,
    /// Each account's burst of such actions.
    pub write_request_burst: u32,
    /// Requests in progress at once; beyond, `Unavailable`. 0 for no bound.
    pub max_requests_in_progress: usize,
    /// Connections open at once; beyond, new ones wait in the kernel's
    /// backlog. 0 for no bound. Lowered at startup to what the process's
    /// open files limit leaves room for.
    pub max_connections: usize,
    /// Seconds a connection has to send a request's headers (from when it
    /// connects or was last answered); beyond, it is closed.
    pub header_timeout_seconds: u64,
}

/// `[openflow]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenflowSection {
    /// TCP address the hypervisors' bridges connect to (`ADDR:PORT`);
    /// empty for none, when they connect over TLS (or a Unix socket) only.
    pub listen: String,
    /// Unix sockets to listen on as well (Open vSwitch only connects to a
    /// `unix:` controller inside its run directory; the demo uses this).
    pub unix_sockets: Vec<PathBuf>,
    /// Seconds of silence before a switch is probed with an echo request
    /// (three times this and it is dropped).
    pub echo_interval_seconds: u64,
    /// Apply flow changes as atomic bundles where the switch supports them.
    pub bundles: bool,
    /// Packet-ins accepted per second and switch; beyond, they are dropped.
    pub packet_in_rate: u32,
    /// Where switches connect over TLS (`ADDR:PORT`, or `ssl:ADDR:PORT`);
    /// empty for no TLS listener.
    pub tls_listen: String,
    /// The controller's certificate chain (PEM), shown to switches.
    pub tls_cert: PathBuf,
    /// The certificate's private key (PEM).
    pub tls_key: PathBuf,
    /// The CA certificates (PEM) switches' certificates must be signed by
    /// (with `ovs-pki`: `switchca/cacert.pem`).
    pub tls_ca: PathBuf,
}

/// `[network]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkSection {
    /// The public gateway's MAC, used until ARP resolves it (or for good,
    /// where the gateway does not answer ARP). Empty: resolve only.
    pub public_gateway_mac: String,
    /// Seconds between ARP requests refreshing the gateway's MAC.
    pub arp_refresh_seconds: u64,
    /// Gratuitous ARPs (each as a request and a reply) when an Elastic IP
    /// is associated or moves, one a second.
    pub gratuitous_arps: u32,
}

/// `[metrics]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSection {
    /// Where Prometheus scrapes `/metrics`; empty disables it.
    pub listen: String,
}

/// `[store]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSection {
    /// Where the store lives: empty for SQLite in `data_dir`, or a
    /// `postgres://` URL of a database that several nodes may share.
    pub url: String,
    /// How often `serve` looks for changes made by `flowgate admin` (and,
    /// on PostgreSQL, by other nodes, which notify their commits sooner).
    pub poll_interval_ms: u64,
}

/// `[nodes]`: several serve nodes on one PostgreSQL store, which elect the
/// switches' OpenFlow master (see docs/nodes.md). Ignored on SQLite.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodesSection {
    /// This node's name in the election (empty: host name and API port).
    pub name: String,
    /// How often a follower tries to lead, and the leader proves it does.
    pub election_interval_ms: u64,
    /// The leader steps down when the database leaves a proof unanswered
    /// this long.
    pub lease_ms: u64,
    /// The database ends a silent node's session (and leadership) after this
    /// long; must exceed `election_interval_ms + lease_ms`.
    pub session_timeout_ms: u64,
}

/// `[log]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSection {
    /// A tracing filter (`info`, `flowgate=debug,ec2api=trace`); `RUST_LOG` wins.
    pub level: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("/var/lib/flowgate"),
            api: ApiSection::default(),
            openflow: OpenflowSection::default(),
            network: NetworkSection::default(),
            metrics: MetricsSection::default(),
            store: StoreSection::default(),
            nodes: NodesSection::default(),
            log: LogSection::default(),
        }
    }
}

/// The address a `key` of the configuration names: `ADDR:PORT`, or empty
/// for none.
fn optional_address(key: &str, value: &str) -> Result<Option<SocketAddr>, String> {
    if value.is_empty() {
        return Ok(None);
    }
    value
        .parse()
        .map(Some)
        .map_err(|_| format!("{key}: {value:?} is not ADDR:PORT (or empty for none)"))
}

impl Default for ApiSection {
    fn default() -> Self {
        ApiSection {
            listen: SocketAddr::from(([127, 0, 0, 1], 8773)),
            region: "flowgate-1".into(),
            zone: "flowgate-1a".into(),
            endpoint: String::new(),
            addresses_per_account: 5,
            clock_skew_seconds: 300,
            terminated_retention_seconds: 3600,
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
            read_requests_per_second: 200.0,
            read_request_burst: 1000,
            write_requests_per_second: 50.0,
            write_request_burst: 500,
            max_requests_in_progress: 1024,
            max_connections: 4096,
            header_timeout_seconds: 30,
        }
    }
}

impl Default for OpenflowSection {
    fn default() -> Self {
        OpenflowSection {
            listen: "127.0.0.1:6653".into(),
            unix_sockets: Vec::new(),
            echo_interval_seconds: 5,
            bundles: true,
            packet_in_rate: 200,
            tls_listen: String::new(),
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
            tls_ca: PathBuf::new(),
        }
    }
}

impl Default for NetworkSection {
    fn default() -> Self {
        NetworkSection {
            public_gateway_mac: String::new(),
            arp_refresh_seconds: 30,
            gratuitous_arps: 3,
        }
    }
}

impl Default for MetricsSection {
    fn default() -> Self {
        MetricsSection {
            listen: "127.0.0.1:9773".into(),
        }
    }
}

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection {
            url: String::new(),
            poll_interval_ms: 250,
        }
    }
}

impl Default for NodesSection {
    fn default() -> Self {
        let election = store::election::ElectionOptions::default();
        NodesSection {
            name: String::new(),
            election_interval_ms: election.interval.as_millis() as u64,
            lease_ms: election.lease.as_millis() as u64,
            session_timeout_ms: election.server_timeout.as_millis() as u64,
        }
    }
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection { level: "info".into() }
    }
}

/// What went wrong reading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line.
        message: String,
    },
}

impl Config {
    /// Reads `path`, or the default file if it exists, or nothing.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let (path, required) = match path {
            Some(path) => (path.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if !required && err.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Config::default());
            }
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        Config::parse(&text).map_err(|message| ConfigError::Invalid { path, message })
    }

    /// Parses the TOML text of a configuration file.
    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        if config.api.addresses_per_account == 0 {
            return Err("api.addresses_per_account must be at least 1".into());
        }
        config.public_gateway_mac()?;
        config.store_location()?;
        config.metrics_listen()?;
        config.openflow_listen()?;
        config.check_api_limits()?;
        config.check_tls()?;
        config.check_nodes()?;
        Ok(config)
    }

    fn check_api_limits(&self) -> Result<(), String> {
        let api = &self.api;
        for (name, rate, burst) in [
            ("read", api.read_requests_per_second, api.read_request_burst),
            ("write", api.write_requests_per_second, api.write_request_burst),
        ] {
            if !rate.is_finite() || rate < 0.0 {
                return Err(format!(
                    "api.{name}_requests_per_second must be 0 (no limit) or more"
                ));
            }
            if rate > 0.0 && burst == 0 {
                return Err(format!("api.{name}_request_burst must be at least 1"));
            }
        }
        if api.header_timeout_seconds == 0 {
            return Err("api.header_timeout_seconds must be at least 1".into());
        }
        Ok(())
    }

    /// A leader cut off from the database must step down before the
    /// database lets another node in (docs/nodes.md).
    fn check_nodes(&self) -> Result<(), String> {
        let n = &self.nodes;
        if n.election_interval_ms == 0 || n.lease_ms == 0 {
            return Err("nodes.election_interval_ms and nodes.lease_ms must be at least 1".into());
        }
        if n.election_interval_ms.saturating_add(n.lease_ms) >= n.session_timeout_ms {
            return Err(format!(
                "nodes.session_timeout_ms ({}) must exceed nodes.election_interval_ms + nodes.lease_ms ({})",
                n.session_timeout_ms,
                n.election_interval_ms.saturating_add(n.lease_ms)
            ));
        }
        Ok(())
    }

    /// Every TLS setting comes with the others it needs; files are read
    /// only when serve starts ([`Config::api_tls`], [`Config::openflow_tls`]).
    fn check_tls(&self) -> Result<(), String> {
        let set = |p: &PathBuf| !p.as_os_str().is_empty();
        if set(&self.api.tls_cert) != set(&self.api.tls_key) {
            return Err("api.tls_cert and api.tls_key go together (HTTPS needs both)".into());
        }
        let of = &self.openflow;
        let files = [set(&of.tls_cert), set(&of.tls_key), set(&of.tls_ca)];
        match (self.openflow_tls_listen()?, files) {
            (None, [false, false, false]) | (Some(_), [true, true, true]) => Ok(()),
            (None, _) => Err("openflow.tls_cert, tls_key and tls_ca are set but openflow.tls_listen is empty".into()),
            (Some(_), _) => Err("openflow.tls_listen needs openflow.tls_cert, tls_key and tls_ca (switches must present a certificate tls_ca signed)".into()),
        }
    }

    /// Where switches connect over TLS, if anywhere.
    pub fn openflow_tls_listen(&self) -> Result<Option<SocketAddr>, String> {
        let text = self.openflow.tls_listen.as_str();
        if text.is_empty() {
            return Ok(None);
        }
        let with_scheme = if text.parse::<SocketAddr>().is_ok() {
            format!("ssl:{text}")
        } else {
            text.to_string()
        };
        match with_scheme.parse::<controller::ListenAddr>() {
            Ok(controller::ListenAddr::Tls(addr)) => Ok(Some(addr)),
            _ => Err(format!(
                "openflow.tls_listen: {text:?} is not ADDR:PORT or ssl:ADDR:PORT"
            )),
        }
    }

    /// The OpenFlow TLS listener's address and server configuration
    /// (switches must show a certificate `tls_ca` signed), if configured.
    /// Reads the certificate files.
    pub fn openflow_tls(&self) -> Result<Option<(SocketAddr, Arc<tls::ServerConfig>)>, String> {
        let Some(addr) = self.openflow_tls_listen()? else {
            return Ok(None);
        };
        let of = &self.openflow;
        let config = tls::server_config(&of.tls_cert, &of.tls_key, Some(&of.tls_ca), &[])
            .map_err(|e| format!("openflow TLS: {e}"))?;
        Ok(Some((addr, config)))
    }

    /// The API's HTTPS server configuration, if configured. Reads the
    /// certificate files.
    pub fn api_tls(&self) -> Result<Option<Arc<tls::ServerConfig>>, String> {
        if self.api.tls_cert.as_os_str().is_empty() {
            return Ok(None);
        }
        tls::server_config(&self.api.tls_cert, &self.api.tls_key, None, &[b"http/1.1"])
            .map(Some)
            .map_err(|e| format!("api TLS: {e}"))
    }

    /// The configured public gateway MAC, if any.
    pub fn public_gateway_mac(&self) -> Result<Option<openflow::MacAddr>, String> {
        if self.network.public_gateway_mac.is_empty() {
            return Ok(None);
        }
        self.network
            .public_gateway_mac
            .parse()
            .map(Some)
            .map_err(|e| format!("network.public_gateway_mac: {e}"))
    }

    /// Where to serve `/metrics`, if anywhere.
    pub fn metrics_listen(&self) -> Result<Option<SocketAddr>, String> {
        optional_address("metrics.listen", &self.metrics.listen)
    }

    /// Where switches connect over plain TCP, if anywhere.
    pub fn openflow_listen(&self) -> Result<Option<SocketAddr>, String> {
        optional_address("openflow.listen", &self.openflow.listen)
    }

    /// The OpenFlow controller's settings.
    pub fn controller_config(&self) -> controller::ControllerConfig {
        let echo = Duration::from_secs(self.openflow.echo_interval_seconds.max(1));
        controller::ControllerConfig {
            echo_interval: echo,
            dead_after: echo * 3,
            use_bundles: self.openflow.bundles,
            packet_in_rate: self.openflow.packet_in_rate,
            packet_in_burst: self.openflow.packet_in_rate.saturating_mul(2),
            // The data plane republishes a switch's flows as soon as it has
            // seen the switch's ports; this only bounds a stuck data plane.
            initial_desired_wait: Some(Duration::from_secs(5)),
            ..controller::ControllerConfig::default()
        }
    }

    /// The data plane's settings.
    pub fn dataplane_config(&self) -> dataplane::DataplaneConfig {
        dataplane::DataplaneConfig {
            public_gateway_mac: self.public_gateway_mac().ok().flatten(),
            arp_refresh: Duration::from_secs(self.network.arp_refresh_seconds.max(1)),
            garp_count: self.network.gratuitous_arps,
            ..dataplane::DataplaneConfig::default()
        }
    }

    /// The EC2 API's settings.
    pub fn api_config(&self) -> ec2api::ApiConfig {
        let endpoint = if self.api.endpoint.is_empty() {
            self.api.listen.to_string()
        } else {
            self.api.endpoint.clone()
        };
        ec2api::ApiConfig {
            listen: self.api.listen,
            region: self.api.region.clone(),
            zone: self.api.zone.clone(),
            endpoint,
            addresses_per_account: self.api.addresses_per_account,
            clock_skew: Duration::from_secs(self.api.clock_skew_seconds),
            terminated_retention: Duration::from_secs(self.api.terminated_retention_seconds),
            limits: ec2api::limits::Limits {
                mutating: ec2api::limits::RateLimit {
                    per_second: self.api.write_requests_per_second,
                    burst: self.api.write_request_burst,
                },
                non_mutating: ec2api::limits::RateLimit {
                    per_second: self.api.read_requests_per_second,
                    burst: self.api.read_request_burst,
                },
                max_in_flight: self.api.max_requests_in_progress,
                body_timeout: ec2api::limits::BODY_TIMEOUT,
                max_connections: self.api.max_connections,
                header_timeout: Duration::from_secs(self.api.header_timeout_seconds),
            },
        }
    }

    /// Where the store lives (`store.url`, else SQLite in `data_dir`).
    pub fn store_location(&self) -> Result<store::StoreLocation, String> {
        store::StoreLocation::from_url(&self.store.url, &self.data_dir).map_err(|e| format!("store.url: {e}"))
    }

    /// Opens the store where the configuration says it lives.
    pub async fn open_store(&self) -> Result<store::Store, String> {
        let location = self.store_location()?;
        store::Store::open(&location, self.store_options())
            .await
            .map_err(|e| format!("cannot open the store ({}): {e}", location.describe()))
    }

    /// The leader election's timing (`[nodes]`).
    pub fn election_options(&self) -> store::election::ElectionOptions {
        store::election::ElectionOptions {
            interval: Duration::from_millis(self.nodes.election_interval_ms),
            lease: Duration::from_millis(self.nodes.lease_ms),
            server_timeout: Duration::from_millis(self.nodes.session_timeout_ms),
        }
    }

    /// The store's settings.
    pub fn store_options(&self) -> store::StoreOptions {
        store::StoreOptions {
            poll_interval: Duration::from_millis(self.store.poll_interval_ms.max(10)),
            ..store::StoreOptions::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_parses_and_defaults_fill_the_rest() {
        let example = include_str!("../../../docs/flowgate.example.toml");
        let config = Config::parse(example).unwrap();
        assert_eq!(config.api.listen.port(), 8773);
        let partial = Config::parse("[api]\naddresses_per_account = 2\n").unwrap();
        assert_eq!(partial.api.addresses_per_account, 2);
        assert_eq!(partial.api.region, "flowgate-1");
        assert!(Config::parse("[api]\nbogus = 1\n").is_err());
        assert!(Config::parse("[api]\naddresses_per_account = 0\n").is_err());
        let pg = Config::parse("[store]\nurl = \"postgres://fg@db/flowgate\"\n").unwrap();
        assert!(matches!(
            pg.store_location(),
            Ok(store::StoreLocation::Postgres(_))
        ));
        assert!(matches!(
            partial.store_location(),
            Ok(store::StoreLocation::Sqlite(_))
        ));
        assert!(Config::parse("[store]\nurl = \"mysql://db\"\n").is_err());
    }

    #[test]
    fn election_timings_that_could_elect_two_leaders_are_refused() {
        let defaults = Config::parse("").unwrap().election_options();
        assert!(defaults.interval + defaults.lease < defaults.server_timeout);
        assert!(Config::parse("[nodes]\nlease_ms = 5000\n").is_err());
        assert!(Config::parse("[nodes]\nelection_interval_ms = 0\n").is_err());
        let fast =
            Config::parse("[nodes]\nelection_interval_ms = 50\nlease_ms = 500\nsession_timeout_ms = 1000\n")
                .unwrap();
        assert_eq!(fast.election_options().lease, Duration::from_millis(500));
    }

    #[test]
    fn tls_settings_come_together() {
        let none = Config::parse("").unwrap();
        assert!(matches!(none.openflow_tls(), Ok(None)));
        assert!(matches!(none.api_tls(), Ok(None)));
        assert!(Config::parse("[api]\ntls_cert = \"/c.pem\"\n").is_err());
        let files = "tls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"\ntls_ca = \"/ca.pem\"\n";
        assert!(
            Config::parse(&format!("[openflow]\n{files}")).is_err(),
            "files without tls_listen"
        );
        assert!(
            Config::parse("[openflow]\ntls_listen = \"0.0.0.0:6653\"\n").is_err(),
            "tls_listen without files"
        );
        for listen in ["0.0.0.0:6653", "ssl:0.0.0.0:6653", "tls:0.0.0.0:6653"] {
            let config = Config::parse(&format!("[openflow]\ntls_listen = \"{listen}\"\n{files}")).unwrap();
            assert_eq!(
                config.openflow_tls_listen().unwrap(),
                Some(SocketAddr::from(([0, 0, 0, 0], 6653)))
            );
            // The files are read only now, at startup: missing ones are named.
            let err = config.openflow_tls().err().unwrap_or_default();
            assert!(err.contains("/c.pem"), "{err}");
        }
        for bad in ["unix:/x.sock", "tcp:0.0.0.0:6653", "nowhere"] {
            assert!(
                Config::parse(&format!("[openflow]\ntls_listen = \"{bad}\"\n{files}")).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn listen_addresses_may_be_empty_for_none() {
        let defaults = Config::parse("").unwrap();
        assert_eq!(
            defaults.openflow_listen().unwrap(),
            Some(SocketAddr::from(([127, 0, 0, 1], 6653)))
        );
        assert!(defaults.metrics_listen().unwrap().is_some());
        let none = Config::parse("[openflow]\nlisten = \"\"\n[metrics]\nlisten = \"\"\n").unwrap();
        assert_eq!(none.openflow_listen().unwrap(), None);
        assert_eq!(none.metrics_listen().unwrap(), None);
        let err = Config::parse("[openflow]\nlisten = \"tcp:0.0.0.0:6653\"\n")
            .err()
            .unwrap_or_default();
        assert!(err.contains("openflow.listen"), "{err}");
    }

    #[test]
    fn api_limits_default_to_sane_values_and_zero_turns_them_off() {
        let limits = Config::parse("").unwrap().api_config().limits;
        assert_eq!(limits.non_mutating.per_second, 200.0);
        assert_eq!(limits.mutating.burst, 500);
        assert_eq!(limits.max_in_flight, 1024);
        let off =
            Config::parse("[api]\nread_requests_per_second = 0\nwrite_requests_per_second = 0\n").unwrap();
        assert_eq!(off.api_config().limits.mutating.per_second, 0.0);
        let fraction = Config::parse("[api]\nwrite_requests_per_second = 0.5\n").unwrap();
        assert_eq!(fraction.api_config().limits.mutating.per_second, 0.5);
        assert!(Config::parse("[api]\nread_requests_per_second = -1\n").is_err());
        assert!(Config::parse("[api]\nread_request_burst = 0\n").is_err());
    }
}
