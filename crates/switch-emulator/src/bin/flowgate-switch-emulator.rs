//! `flowgate-switch-emulator`: runs N emulated OpenFlow switches against a
//! controller until Ctrl-C, printing a one-line summary of what they
//! received every `--stats-interval` and a final one at exit.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use openflow::Version;
use switch_emulator::{Backoff, CookieRejection, Emulator, EmulatorConfig, Faults, Target};
use tracing_subscriber::EnvFilter;

/// Emulated OpenFlow 1.3/1.4 switches for testing and benchmarking an
/// OpenFlow controller without hundreds of Open vSwitch bridges.
///
/// Each switch connects actively to every --controller (as a bridge with
/// `set-controller` does), reconnects with backoff when the connection
/// drops, and answers like Open vSwitch 3.x: handshake, echo, features,
/// config, roles, descriptions, flow/aggregate/port statistics, port
/// descriptions, barriers, flow-mods of every command, bundles (OpenFlow
/// 1.3 ONF extension and 1.4), packet-outs. Flow tables live in memory;
/// no packet passes. Switch i has datapath id DPID_BASE+i, bridge name
/// BRIDGE_PREFIX<i> (its LOCAL port) and ports 1..=PORTS named
/// PORT_PREFIX<n>.
///
/// Every --stats-interval a line of counters summed over all switches is
/// printed (flows, flow-mods by command, bundles, barriers, errors...), and
/// once more at exit. Logs go to stderr (RUST_LOG=debug shows every
/// connection).
#[derive(Debug, Parser)]
#[command(name = "flowgate-switch-emulator", version, verbatim_doc_comment)]
struct Args {
    /// Controller to connect to: tcp:HOST:PORT or unix:PATH (repeat for
    /// several controllers; every switch connects to each).
    #[arg(long = "controller", short = 'c', required = true, value_name = "TARGET")]
    controllers: Vec<Target>,
    /// Number of switches.
    #[arg(long, short = 'n', default_value_t = 1)]
    switches: usize,
    /// Numbered ports per switch.
    #[arg(long, default_value_t = 8)]
    ports: u32,
    /// Numbered ports are named <PORT_PREFIX><n>.
    #[arg(long, default_value = "vm")]
    port_prefix: String,
    /// Switch i is named <BRIDGE_PREFIX><i> (also its LOCAL port's name).
    #[arg(long, default_value = "emu")]
    bridge_prefix: String,
    /// Datapath id of the first switch (decimal or 0x-prefixed hex).
    #[arg(long, value_parser = parse_u64, default_value = "0xee00000001")]
    dpid_base: u64,
    /// Print a summary line this often (e.g. 1s, 500ms; 0 = only at exit).
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    stats_interval: Duration,
    /// Probe an idle controller with an echo request after this long, and
    /// drop the connection after as long again without an answer (0 = never).
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    echo_interval: Duration,
    /// First reconnection wait; doubles on each failure.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    backoff_initial: Duration,
    /// Longest reconnection wait.
    #[arg(long, value_parser = parse_duration, default_value = "8s")]
    backoff_max: Duration,
    /// Spread the switches' first connections over this long.
    #[arg(long, value_parser = parse_duration, default_value = "0s")]
    connect_spread: Duration,
    /// Most flows per switch (OFPFMFC_TABLE_FULL beyond).
    #[arg(long)]
    max_flows: Option<usize>,
    /// OpenFlow versions offered: 13, 14 or both.
    #[arg(long, value_delimiter = ',', default_value = "13,14")]
    openflow: Vec<u8>,
    /// Tokio worker threads (1 leaves the other cores to the controller).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Fault: drop each connection after it received N messages.
    #[arg(long, value_name = "N", help_heading = "Fault injection")]
    drop_after: Option<u64>,
    /// Fault: drop at most this many connections per switch that way.
    #[arg(long, value_name = "N", help_heading = "Fault injection")]
    drop_times: Option<u32>,
    /// Fault: stall this long before each barrier reply.
    #[arg(long, value_parser = parse_duration, help_heading = "Fault injection")]
    barrier_delay: Option<Duration>,
    /// Fault: refuse adds/modifies whose cookie matches, as
    /// VALUE/MASK[:ERROR_NAME] (default error OFPFMFC_EPERM).
    #[arg(long, value_name = "VALUE/MASK[:ERROR]", help_heading = "Fault injection")]
    reject_cookie: Option<String>,
    /// Apply the faults to the first N switches only (default: all).
    #[arg(long, value_name = "N", help_heading = "Fault injection")]
    faulty_switches: Option<usize>,
}

fn parse_u64(s: &str) -> Result<u64, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(&hex.replace('_', ""), 16),
        None => s.replace('_', "").parse(),
    };
    r.map_err(|e| format!("{s:?}: {e}"))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (number, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((s, "s"), |i| s.split_at(i));
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{s:?}: expected e.g. 1s, 250ms, 2m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("{s:?}: unit must be ms, s or m")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

fn parse_rejection(s: &str) -> Result<CookieRejection, String> {
    let (cookies, error) = s.split_once(':').unwrap_or((s, "OFPFMFC_EPERM"));
    let (value, mask) = cookies
        .split_once('/')
        .ok_or_else(|| format!("{s:?}: expected VALUE/MASK[:ERROR]"))?;
    CookieRejection::new(parse_u64(value)?, parse_u64(mask)?, error).map_err(|e| e.to_string())
}

/// Resident memory of this process in KiB, from /proc.
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn summary(label: &str, started: Instant, counters: &switch_emulator::Counters) -> String {
    let rss = rss_kib().map_or_else(|| "?".to_string(), |k| format!("{:.1}", k as f64 / 1024.0));
    format!(
        "{label} t={:.1}s {counters} rss_mib={rss}",
        started.elapsed().as_secs_f64()
    )
}

fn config(args: &Args) -> Result<(EmulatorConfig, Faults), String> {
    let mut config = EmulatorConfig::new(args.controllers[0].clone(), args.switches);
    config.controllers = args.controllers.clone();
    config.ports_per_switch = args.ports;
    config.port_prefix = args.port_prefix.clone();
    config.bridge_prefix = args.bridge_prefix.clone();
    config.datapath_id_base = args.dpid_base;
    config.session.echo_interval = (!args.echo_interval.is_zero()).then_some(args.echo_interval);
    config.session.versions = args
        .openflow
        .iter()
        .map(|v| match v {
            13 => Ok(Version::OF13),
            14 => Ok(Version::OF14),
            _ => Err(format!("--openflow {v}: only 13 and 14 are implemented")),
        })
        .collect::<Result<_, _>>()?;
    config.backoff = Backoff {
        initial: args.backoff_initial,
        max: args.backoff_max,
    };
    config.connect_spread = args.connect_spread;
    config.max_flows = args.max_flows;
    let faults = Faults {
        drop_after_messages: args.drop_after,
        drop_times: args.drop_times,
        barrier_delay: args.barrier_delay,
        reject_cookie: args.reject_cookie.as_deref().map(parse_rejection).transpose()?,
    };
    if args.faulty_switches.is_none() {
        config.faults = faults.clone();
    }
    config.validate().map_err(|e| e.to_string())?;
    Ok((config, faults))
}

async fn run(args: Args) -> Result<(), String> {
    let (config, faults) = config(&args)?;
    let emulator = Emulator::start(config).map_err(|e| e.to_string())?;
    if let Some(n) = args.faulty_switches {
        for switch in emulator.switches().take(n) {
            switch.set_faults(faults.clone());
        }
    }
    let started = Instant::now();
    eprintln!(
        "flowgate-switch-emulator: {} switches (datapath ids {:#x}..) connecting to {}",
        args.switches,
        args.dpid_base,
        args.controllers
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut ticker = (!args.stats_interval.is_zero()).then(|| {
        let mut t = tokio::time::interval(args.stats_interval);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        t
    });
    if let Some(t) = ticker.as_mut() {
        // The first tick of an interval is immediate; skip it.
        t.tick().await;
    }
    loop {
        tokio::select! {
            r = &mut ctrl_c => {
                r.map_err(|e| format!("waiting for Ctrl-C: {e}"))?;
                break;
            }
            _ = async {
                match ticker.as_mut() {
                    Some(t) => { t.tick().await; }
                    None => std::future::pending::<()>().await,
                }
            } => println!("{}", summary("stats", started, &emulator.counters())),
        }
    }
    let counters = emulator.stop().await;
    println!("{}", summary("final", started, &counters));
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("flowgate-switch-emulator: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flowgate-switch-emulator: {e}");
            ExitCode::FAILURE
        }
    }
}
