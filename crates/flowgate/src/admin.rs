//! `flowgate admin`: the operator's commands (accounts and keys, public
//! pools, private networks, images, hypervisors). Each command is one
//! transaction on the store, safe while `flowgate serve` runs on the same
//! data directory (serve picks the change up within its poll interval).
//! `--json` prints machine-readable output for scripts.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use ipnet::Ipv4Net;
use model::{AdminError, DriverKind, Hypervisor, ImageId, PoolId, State, SubnetId};
use serde_json::{Value, json};
use store::{MutateError, Store};

use crate::config::Config;

/// Where the store is, for every command that opens it: `--config FILE`,
/// `--data-dir DIR`, `--store URL`.
#[derive(Args, Clone, Debug)]
pub struct StoreArgs {
    /// Configuration file (default: /etc/flowgate/flowgate.toml if present).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory holding the store (overrides `data_dir` of the
    /// configuration; default /var/lib/flowgate).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The store: a postgres:// URL (overrides `store.url`; default: SQLite
    /// in the data directory).
    #[arg(long, global = true, value_name = "URL")]
    pub store: Option<String>,
}

impl StoreArgs {
    /// The configuration file's settings with the flags on top.
    pub fn config(&self) -> Result<Config, String> {
        let mut config = Config::load(self.config.as_deref()).map_err(|e| e.to_string())?;
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
        }
        if let Some(url) = &self.store {
            config.store.url = url.clone();
        }
        Ok(config)
    }

    /// Opens the store and runs `f` on it to completion.
    pub fn open<T, F, Fut>(&self, f: F) -> Result<T, String>
    where
        F: FnOnce(Store, Config) -> Fut,
        Fut: std::future::Future<Output = Result<T, String>>,
    {
        let config = self.config()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the runtime: {e}"))?;
        // A mistyped --data-dir would otherwise look like an empty cloud.
        if let Ok(store::StoreLocation::Sqlite(dir)) = config.store_location()
            && !store::sqlite_path(&dir).exists()
        {
            eprintln!(
                "flowgate: no store in {} yet: creating a new, empty one \
                 (name an existing one with --data-dir or the configuration's data_dir)",
                dir.display()
            );
        }
        runtime.block_on(async move {
            let store = config.open_store().await?;
            f(store, config).await
        })
    }
}

/// `flowgate admin [--config FILE] [--data-dir DIR] [--store URL] [--json] COMMAND`
#[derive(Args)]
pub struct AdminArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Tenant accounts (each with a 12-digit owner id, keys and a `default` group).
    ///
    /// `account create NAME` prints the first access key and its secret
    /// (shown only then) that boto3 or the AWS CLI sign requests with.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Access keys that sign API requests.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Public address pools that Elastic IPs come from.
    ///
    /// A pool is a range of addresses on the public network behind one
    /// upstream gateway; AllocateAddress takes the first free address of
    /// the first pool that has one.
    #[command(subcommand)]
    Pool(PoolCommand),
    /// Private networks instances get their addresses from.
    ///
    /// RunInstances takes private IPs from the network its SubnetId names,
    /// else from the first network; the switch answers ARP for the
    /// network's gateway itself.
    #[command(subcommand)]
    Network(NetworkCommand),
    /// The image catalogue (ami-… ids).
    #[command(subcommand)]
    Image(ImageCommand),
    /// Hypervisors: Open vSwitch integration bridges that host instances.
    ///
    /// flowgate serve is the OpenFlow controller of every registered bridge
    /// and places instances on the least-loaded hypervisor of their zone.
    /// See docs/hypervisors.md (drivers, libvirt, OpenNebula) and
    /// docs/deployment.md.
    #[command(subcommand)]
    Hypervisor(HypervisorCommand),
    /// Instances of every account, with where they run and the port name
    /// their hypervisor must plug them in with.
    #[command(subcommand)]
    Instance(InstanceCommand),
    /// The store's revision and how many accounts, groups, instances,
    /// addresses, networks, pools, images and hypervisors it holds.
    Status,
    /// Writes a consistent copy of the store to FILE while `flowgate serve`
    /// keeps running.
    ///
    /// The copy holds every change acknowledged before the backup started
    /// (SQLite's VACUUM INTO on a snapshot; writers are not blocked). It is
    /// written beside FILE, checked, and renamed over FILE, so FILE is never
    /// a partial copy; it is readable by its owner only, as it holds secret
    /// access keys. Run it as the user `flowgate serve` runs as.
    /// `flowgate admin restore FILE` puts it back. See docs/deployment.md.
    Backup {
        /// Where to write the copy (replaced if it exists).
        file: PathBuf,
    },
    /// Replaces the store in the data directory with the backup FILE.
    ///
    /// Refused while `flowgate serve` or another `flowgate admin` uses the
    /// data directory (stop the service first), and unless FILE is a whole,
    /// undamaged flowgate store of a schema version this flowgate knows
    /// (older versions are migrated when serve next starts); in both cases
    /// nothing is changed. The database it replaces is kept beside it as
    /// flowgate.db.before-restore-TIME. The data directory is created if
    /// missing. See docs/deployment.md.
    Restore {
        /// A file written by `flowgate admin backup`.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum AccountCommand {
    /// Creates an account and its first access key; the secret is shown only now.
    Create {
        /// A unique name.
        name: String,
    },
    /// Lists accounts.
    List,
    /// Deletes an account, its keys, groups and tags (refused while it has
    /// instances or addresses, unless --force).
    Delete {
        /// Owner id or name.
        account: String,
        /// Delete its instances and addresses too.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum InstanceCommand {
    /// Lists instances (terminated ones while EC2 would still show them).
    List {
        /// Only this account's instances (owner id or name).
        account: Option<String>,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Creates another access key for an account; the secret is shown only now.
    Create {
        /// Owner id or name.
        account: String,
        /// The key may only call Describe* (others answer UnauthorizedOperation).
        #[arg(long)]
        read_only: bool,
    },
    /// Lists access keys (without secrets).
    List {
        /// Only this account's keys (owner id or name).
        account: Option<String>,
    },
    /// Deletes an access key.
    Delete {
        /// The access key id (AKIA…).
        access_key_id: String,
    },
}

#[derive(Subcommand)]
enum PoolCommand {
    /// Adds a pool of public addresses on the public network.
    Add {
        /// The public network, e.g. 203.0.113.0/24.
        #[arg(long)]
        cidr: Ipv4Net,
        /// The upstream router on it (never handed out).
        #[arg(long)]
        gateway: Ipv4Addr,
        /// First address handed out (default: the first host address).
        #[arg(long, requires = "last")]
        first: Option<Ipv4Addr>,
        /// Last address handed out (default: the last host address).
        #[arg(long, requires = "first")]
        last: Option<Ipv4Addr>,
    },
    /// Lists pools and how many of their addresses are allocated.
    List,
    /// Deletes a pool none of whose addresses is allocated.
    Delete {
        /// The pool id (ipv4pool-…).
        pool_id: String,
    },
}

#[derive(Subcommand)]
enum NetworkCommand {
    /// Adds a private network (EC2's subnet).
    Add {
        /// Its prefix, e.g. 10.0.0.0/24.
        #[arg(long)]
        cidr: Ipv4Net,
        /// The virtual router address inside it.
        #[arg(long)]
        gateway: Ipv4Addr,
        /// A VLAN tag on the physical network (default: untagged).
        #[arg(long)]
        vlan: Option<u16>,
    },
    /// Lists networks.
    List,
    /// Deletes a network without instances.
    Delete {
        /// The network id (subnet-…).
        subnet_id: String,
    },
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Adds an image to the catalogue.
    Add {
        /// A unique name.
        name: String,
        /// Free text shown by DescribeImages.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Lists images.
    List,
    /// Removes an image from the catalogue.
    Delete {
        /// The image id (ami-…).
        image_id: String,
    },
}

#[derive(Subcommand)]
enum HypervisorCommand {
    /// Registers a hypervisor's integration bridge.
    ///
    /// On the hypervisor, point the bridge at flowgate and keep its flows
    /// while flowgate is away: `ovs-vsctl set-fail-mode BRIDGE secure` and
    /// `ovs-vsctl set-controller BRIDGE tcp:CONTROLLER:6653` (the address of
    /// `openflow.listen`). See docs/hypervisors.md.
    #[command(group(clap::ArgGroup::new("identity").required(true).args(["bridge", "datapath_id"])))]
    Add {
        /// A unique name.
        name: String,
        /// The bridge's name (recognised by its LOCAL port's name).
        #[arg(long)]
        bridge: Option<String>,
        /// The bridge's datapath id in hex.
        #[arg(long, value_parser = parse_datapath_id)]
        datapath_id: Option<u64>,
        /// The port towards the physical network.
        #[arg(long)]
        uplink: String,
        /// How instances are started there.
        #[arg(long, default_value = "netns", value_parser = ["netns", "external"])]
        driver: String,
        /// The Open vSwitch database of the bridge, e.g. tcp:10.0.0.5:6640 (the
        /// netns driver adds ports there; for the external driver flowgate
        /// reads interfaces' external_ids:iface-id from it; default: the
        /// system's).
        #[arg(long)]
        ovsdb: Option<String>,
        /// The network namespace the bridge's ovs-vswitchd runs in, when not
        /// the root one (a test bed's lab); the netns driver plugs instances
        /// there.
        #[arg(long)]
        netns: Option<String>,
        /// The availability zone (default: the configured zone).
        #[arg(long)]
        zone: Option<String>,
    },
    /// Lists hypervisors.
    List,
    /// Removes a hypervisor without instances.
    Delete {
        /// Its name.
        name: String,
    },
}

fn parse_datapath_id(text: &str) -> Result<u64, String> {
    let digits = text.trim_start_matches("0x").replace(':', "");
    u64::from_str_radix(&digits, 16).map_err(|_| format!("{text:?} is not a hex datapath id"))
}

fn now_ms() -> u64 {
    ec2api::actions::now_ms()
}

/// Runs an admin command; returns what to print.
pub fn run(args: AdminArgs) -> Result<(), String> {
    // Backup and restore work on the database file itself, and a restore
    // must not hold the store open: neither goes through `execute`.
    if matches!(
        args.command,
        AdminCommand::Backup { .. } | AdminCommand::Restore { .. }
    ) {
        return backup_or_restore(args);
    }
    let json = args.json;
    let output = args
        .store
        .open(|store, config| async move { execute(&store, &config, args.command).await })?;
    print(&output, json);
    Ok(())
}

/// What a command answers: JSON for scripts and lines for people.
struct Output {
    json: Value,
    text: String,
}

fn print(output: &Output, json: bool) {
    if json {
        println!("{}", output.json);
    } else if !output.text.is_empty() {
        println!("{}", output.text.trim_end());
    }
}

async fn mutate<T: Send + 'static>(
    store: &Store,
    f: impl FnOnce(&mut State, &mut dyn model::Entropy) -> Result<T, AdminError> + Send + 'static,
) -> Result<T, String> {
    store
        .mutate(move |state| f(state, &mut ec2api::actions::OsEntropy))
        .await
        .map_err(|e| match e {
            MutateError::Rejected(e) => e.to_string(),
            MutateError::Storage(e) => format!("store: {e}"),
        })
}

async fn execute(store: &Store, config: &Config, command: AdminCommand) -> Result<Output, String> {
    match command {
        AdminCommand::Account(c) => account(store, c).await,
        AdminCommand::Key(c) => key(store, c).await,
        AdminCommand::Pool(c) => pool(store, c).await,
        AdminCommand::Network(c) => network(store, c).await,
        AdminCommand::Image(c) => image(store, c).await,
        AdminCommand::Hypervisor(c) => hypervisor(store, config, c).await,
        AdminCommand::Instance(InstanceCommand::List { account }) => instance_list(store, account.as_deref()),
        AdminCommand::Backup { .. } | AdminCommand::Restore { .. } => {
            Err("backup and restore do not run on an open store".into())
        }
        AdminCommand::Status => {
            let state = store.read();
            let tenants: Vec<_> = state.tenants().collect();
            let json = json!({
                "revision": store.revision(),
                "accounts": tenants.len(),
                "security_groups": tenants.iter().map(|t| t.groups.len()).sum::<usize>(),
                "instances": tenants.iter().map(|t| t.instances.len()).sum::<usize>(),
                "addresses": tenants.iter().map(|t| t.addresses.len()).sum::<usize>(),
                "networks": state.networks().count(),
                "pools": state.pools().count(),
                "images": state.images().count(),
                "hypervisors": state.hypervisors().count(),
            });
            let text = json
                .as_object()
                .map(|o| o.iter().map(|(k, v)| format!("{k}: {v}\n")).collect())
                .unwrap_or_default();
            Ok(Output { json, text })
        }
    }
}

async fn account(store: &Store, command: AccountCommand) -> Result<Output, String> {
    match command {
        AccountCommand::Create { name } => {
            let (account, key) = mutate(store, move |s, e| s.create_account(&name, now_ms(), e)).await?;
            Ok(Output {
                json: json!({
                    "account_id": account.id.as_str(),
                    "name": account.name,
                    "access_key_id": key.access_key_id,
                    "secret_access_key": key.secret_access_key,
                }),
                text: format!(
                    "account {} ({})\naccess key id:     {}\nsecret access key: {}\n(the secret is not shown again)",
                    account.id, account.name, key.access_key_id, key.secret_access_key
                ),
            })
        }
        AccountCommand::List => {
            let state = store.read();
            let rows: Vec<Value> = state
                .tenants()
                .map(|t| {
                    json!({
                        "account_id": t.account.id.as_str(),
                        "name": t.account.name,
                        "security_groups": t.groups.len(),
                        "instances": t.instances.len(),
                        "addresses": t.addresses.len(),
                    })
                })
                .collect();
            let text = state
                .tenants()
                .map(|t| {
                    format!(
                        "{}  {:<20} groups={} instances={} addresses={}\n",
                        t.account.id,
                        t.account.name,
                        t.groups.len(),
                        t.instances.len(),
                        t.addresses.len()
                    )
                })
                .collect();
            Ok(Output {
                json: Value::Array(rows),
                text,
            })
        }
        AccountCommand::Delete { account, force } => {
            let id = mutate(store, move |s, _| {
                let id = s.find_account(&account)?;
                s.delete_account(&id, force)?;
                Ok(id)
            })
            .await?;
            Ok(Output {
                json: json!({"deleted": id.as_str()}),
                text: format!("deleted account {id}"),
            })
        }
    }
}

async fn key(store: &Store, command: KeyCommand) -> Result<Output, String> {
    match command {
        KeyCommand::Create { account, read_only } => {
            let key = mutate(store, move |s, e| {
                let id = s.find_account(&account)?;
                s.create_access_key(&id, read_only, now_ms(), e)
            })
            .await?;
            Ok(Output {
                json: json!({
                    "account_id": key.account_id.as_str(),
                    "access_key_id": key.access_key_id,
                    "secret_access_key": key.secret_access_key,
                    "read_only": key.read_only,
                }),
                text: format!(
                    "access key id:     {}\nsecret access key: {}\n(the secret is not shown again)",
                    key.access_key_id, key.secret_access_key
                ),
            })
        }
        KeyCommand::List { account } => {
            let state = store.read();
            let filter = match &account {
                Some(name) => Some(state.find_account(name).map_err(|e| e.to_string())?),
                None => None,
            };
            let mut keys: Vec<_> = state
                .access_keys()
                .filter(|k| filter.as_ref().is_none_or(|a| &k.account_id == a))
                .collect();
            keys.sort_by(|a, b| a.access_key_id.cmp(&b.access_key_id));
            let json = keys
                .iter()
                .map(|k| {
                    json!({"access_key_id": k.access_key_id, "account_id": k.account_id.as_str(), "read_only": k.read_only})
                })
                .collect();
            let text = keys
                .iter()
                .map(|k| {
                    format!(
                        "{}  {}{}\n",
                        k.access_key_id,
                        k.account_id,
                        if k.read_only { "  read-only" } else { "" }
                    )
                })
                .collect();
            Ok(Output {
                json: Value::Array(json),
                text,
            })
        }
        KeyCommand::Delete { access_key_id } => {
            let id = access_key_id.clone();
            mutate(store, move |s, _| s.delete_access_key(&id)).await?;
            Ok(Output {
                json: json!({"deleted": access_key_id}),
                text: format!("deleted access key {access_key_id}"),
            })
        }
    }
}

fn pool_json(state: &State, pool: &model::PublicPool) -> Value {
    let allocated = state
        .tenants()
        .flat_map(|t| t.addresses.values())
        .filter(|a| a.pool_id == pool.id)
        .count();
    json!({
        "pool_id": pool.id.as_str(),
        "cidr": pool.cidr.to_string(),
        "gateway": pool.gateway.to_string(),
        "first": pool.first.to_string(),
        "last": pool.last.to_string(),
        "allocated": allocated,
    })
}

async fn pool(store: &Store, command: PoolCommand) -> Result<Output, String> {
    match command {
        PoolCommand::Add {
            cidr,
            gateway,
            first,
            last,
        } => {
            let range = first.zip(last);
            let pool = mutate(store, move |s, e| s.add_pool(cidr, gateway, range, e)).await?;
            let json = pool_json(&store.read(), &pool);
            Ok(Output {
                json,
                text: format!(
                    "pool {} {} gateway {} hands out {}-{}",
                    pool.id, pool.cidr, pool.gateway, pool.first, pool.last
                ),
            })
        }
        PoolCommand::List => {
            let state = store.read();
            let rows: Vec<Value> = state.pools().map(|p| pool_json(&state, p)).collect();
            let text = rows
                .iter()
                .map(|r| {
                    format!(
                        "{}  {}  gateway {}  {}-{}  allocated {}\n",
                        r["pool_id"].as_str().unwrap_or_default(),
                        r["cidr"].as_str().unwrap_or_default(),
                        r["gateway"].as_str().unwrap_or_default(),
                        r["first"].as_str().unwrap_or_default(),
                        r["last"].as_str().unwrap_or_default(),
                        r["allocated"]
                    )
                })
                .collect();
            Ok(Output {
                json: Value::Array(rows),
                text,
            })
        }
        PoolCommand::Delete { pool_id } => {
            let id = PoolId::parse(&pool_id).map_err(|e| e.to_string())?;
            mutate(store, move |s, _| s.delete_pool(&id)).await?;
            Ok(Output {
                json: json!({"deleted": pool_id}),
                text: format!("deleted pool {pool_id}"),
            })
        }
    }
}

fn network_json(n: &model::Network) -> Value {
    json!({"subnet_id": n.id.as_str(), "cidr": n.cidr.to_string(), "gateway": n.gateway.to_string(), "vlan": n.vlan})
}

async fn network(store: &Store, command: NetworkCommand) -> Result<Output, String> {
    match command {
        NetworkCommand::Add { cidr, gateway, vlan } => {
            let n = mutate(store, move |s, e| s.add_network(cidr, gateway, vlan, e)).await?;
            Ok(Output {
                json: network_json(&n),
                text: format!("network {} {} gateway {}", n.id, n.cidr, n.gateway),
            })
        }
        NetworkCommand::List => {
            let state = store.read();
            let json = state.networks().map(network_json).collect();
            let text = state
                .networks()
                .map(|n| {
                    let vlan = n.vlan.map(|v| format!("  vlan {v}")).unwrap_or_default();
                    format!("{}  {}  gateway {}{vlan}\n", n.id, n.cidr, n.gateway)
                })
                .collect();
            Ok(Output {
                json: Value::Array(json),
                text,
            })
        }
        NetworkCommand::Delete { subnet_id } => {
            let id = SubnetId::parse(&subnet_id).map_err(|e| e.to_string())?;
            mutate(store, move |s, _| s.delete_network(&id)).await?;
            Ok(Output {
                json: json!({"deleted": subnet_id}),
                text: format!("deleted network {subnet_id}"),
            })
        }
    }
}

async fn image(store: &Store, command: ImageCommand) -> Result<Output, String> {
    match command {
        ImageCommand::Add { name, description } => {
            let image = mutate(store, move |s, e| s.add_image(&name, &description, e)).await?;
            Ok(Output {
                json: json!({"image_id": image.id.as_str(), "name": image.name}),
                text: format!("image {} {}", image.id, image.name),
            })
        }
        ImageCommand::List => {
            let state = store.read();
            let json = state
                .images()
                .map(|i| json!({"image_id": i.id.as_str(), "name": i.name, "description": i.description}))
                .collect();
            let text = state
                .images()
                .map(|i| format!("{}  {}\n", i.id, i.name))
                .collect();
            Ok(Output {
                json: Value::Array(json),
                text,
            })
        }
        ImageCommand::Delete { image_id } => {
            let id = ImageId::parse(&image_id).map_err(|e| e.to_string())?;
            mutate(store, move |s, _| s.delete_image(&id)).await?;
            Ok(Output {
                json: json!({"deleted": image_id}),
                text: format!("deleted image {image_id}"),
            })
        }
    }
}

fn instance_list(store: &Store, account: Option<&str>) -> Result<Output, String> {
    let state = store.read();
    let mut json = Vec::new();
    let mut text = String::new();
    for tenant in state.tenants() {
        let a = &tenant.account;
        if account.is_some_and(|want| want != a.id.as_str() && want != a.name) {
            continue;
        }
        for i in tenant.instances.values() {
            json.push(json!({
                "instance_id": i.id.as_str(),
                "account": a.name,
                "state": i.state.name(),
                "hypervisor": i.hypervisor,
                "interface_name": i.interface_name,
                "private_ip": i.private_ip.to_string(),
                "mac": i.mac.to_string(),
            }));
            text.push_str(&format!(
                "{}  {}  {}  {}  port {}  {}  {}\n",
                i.id.as_str(),
                a.name,
                i.state.name(),
                i.hypervisor.as_deref().unwrap_or("-"),
                i.interface_name,
                i.private_ip,
                i.mac
            ));
        }
    }
    Ok(Output {
        json: Value::Array(json),
        text,
    })
}

fn hypervisor_json(h: &Hypervisor) -> Value {
    json!({
        "name": h.name,
        "bridge": h.bridge,
        "datapath_id": h.datapath_id.map(|d| format!("{d:016x}")),
        "uplink": h.uplink,
        "driver": h.driver.as_str(),
        "ovsdb": h.ovsdb,
        "netns": h.netns,
        "zone": h.zone,
    })
}

async fn hypervisor(store: &Store, config: &Config, command: HypervisorCommand) -> Result<Output, String> {
    match command {
        HypervisorCommand::Add {
            name,
            bridge,
            datapath_id,
            uplink,
            driver,
            ovsdb,
            netns,
            zone,
        } => {
            let hv = Hypervisor {
                name,
                bridge,
                datapath_id,
                uplink,
                driver: if driver == "external" {
                    DriverKind::External
                } else {
                    DriverKind::Netns
                },
                ovsdb,
                netns,
                zone: zone.unwrap_or_else(|| config.api.zone.clone()),
            };
            let json = hypervisor_json(&hv);
            let text = format!(
                "hypervisor {} ({} driver, zone {})",
                hv.name,
                hv.driver.as_str(),
                hv.zone
            );
            mutate(store, move |s, _| s.add_hypervisor(hv)).await?;
            Ok(Output { json, text })
        }
        HypervisorCommand::List => {
            let state = store.read();
            let json = state.hypervisors().map(hypervisor_json).collect();
            let text = state
                .hypervisors()
                .map(|h| {
                    let id = h
                        .bridge
                        .clone()
                        .or(h.datapath_id.map(|d| format!("dpid {d:016x}")))
                        .unwrap_or_default();
                    format!(
                        "{}  {}  uplink {}  {}  zone {}\n",
                        h.name,
                        id,
                        h.uplink,
                        h.driver.as_str(),
                        h.zone
                    )
                })
                .collect();
            Ok(Output {
                json: Value::Array(json),
                text,
            })
        }
        HypervisorCommand::Delete { name } => {
            let n = name.clone();
            mutate(store, move |s, _| s.delete_hypervisor(&n)).await?;
            Ok(Output {
                json: json!({"deleted": name}),
                text: format!("deleted hypervisor {name}"),
            })
        }
    }
}

/// `flowgate admin backup FILE` and `flowgate admin restore FILE`.
fn backup_or_restore(args: AdminArgs) -> Result<(), String> {
    let config = args.store.config()?;
    if let store::StoreLocation::Postgres(_) = config.store_location()? {
        return Err(
            "backup and restore copy the SQLite store; a PostgreSQL store is backed up \
                    with PostgreSQL's tools (pg_dump, pg_restore, or base backups)"
                .into(),
        );
    }
    let data_dir = config.data_dir;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let output = runtime.block_on(async {
        match args.command {
            AdminCommand::Backup { file } => {
                let info = store::backup::backup_sqlite(&data_dir, &file)
                    .await
                    .map_err(|e| format!("backup of {} failed: {e}", data_dir.display()))?;
                Ok(Output {
                    json: json!({
                        "file": file.display().to_string(),
                        "data_dir": data_dir.display().to_string(),
                        "revision": info.revision,
                        "objects": info.objects,
                        "bytes": info.bytes,
                        "schema_version": info.schema_version,
                    }),
                    text: format!(
                        "backed up {} (revision {}, {} objects) to {} ({} bytes)",
                        data_dir.display(),
                        info.revision,
                        info.objects,
                        file.display(),
                        info.bytes
                    ),
                })
            }
            AdminCommand::Restore { file } => {
                let secs = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let label = ec2api::auth::format_amz_date(secs);
                let restored = store::backup::restore_sqlite(&data_dir, &file, &label)
                    .await
                    .map_err(|e| format!("restore into {} refused: {e}", data_dir.display()))?;
                let previous = restored.previous.as_ref().map(|p| p.display().to_string());
                let mut text = format!(
                    "restored {} into {} (revision {}, {} objects)",
                    file.display(),
                    data_dir.display(),
                    restored.info.revision,
                    restored.info.objects
                );
                if let Some(previous) = &previous {
                    text.push_str(&format!("\nthe database it replaced is kept as {previous}"));
                }
                Ok(Output {
                    json: json!({
                        "restored": file.display().to_string(),
                        "data_dir": data_dir.display().to_string(),
                        "revision": restored.info.revision,
                        "objects": restored.info.objects,
                        "schema_version": restored.info.schema_version,
                        "previous": previous,
                    }),
                    text,
                })
            }
            _ => Err("not a backup or restore command".to_string()),
        }
    })?;
    print(&output, args.json);
    Ok(())
}
