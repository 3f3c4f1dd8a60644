//! The `flowgate` command: one binary for operators and developers.
//!
//! flowgate gives a private cloud on KVM and Open vSwitch what tenants know
//! from EC2: Elastic IPs and Security Groups, driven through the EC2 Query
//! API and enforced by an OpenFlow controller. This binary is a thin layer
//! over the workspace's crates; each subcommand parses its arguments and
//! hands over to the crate that does the work.

mod admin;
mod config;
mod counters;
mod demo;
mod flows;
mod nodes;
mod ofp;
mod ovs;
mod serve;
mod trace;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "flowgate",
    version,
    about = "EC2-style Elastic IPs and Security Groups for KVM + Open vSwitch clouds",
    long_about = "flowgate gives a private cloud on KVM and Open vSwitch what tenants know from \
                  Amazon EC2: Elastic IPs (public IPv4 addresses answered and rewritten 1:1 in the \
                  switch) and Security Groups (stateful allow rules), driven through the EC2 Query \
                  API so that boto3, the AWS CLI and boto 2 work unchanged, and enforced by an \
                  OpenFlow controller on the Open vSwitch bridge of every hypervisor.\n\n\
                  Start with `flowgate admin account create NAME` (prints the keys), add a public \
                  pool, a private network and an image with `flowgate admin`, then run \
                  `flowgate serve` and point boto3 or the AWS CLI at http://127.0.0.1:8773/. \
                  The store lives in /var/lib/flowgate unless --data-dir or the \
                  configuration says otherwise (/etc/flowgate/flowgate.toml when it exists; \
                  docs/flowgate.example.toml documents every setting). docs/ec2-api.md covers \
                  the API and its clients, docs/hypervisors.md registering hypervisors and \
                  plugging VMs, docs/deployment.md running flowgate for real (systemd, \
                  firewalling, metrics, backups, upgrades). `flowgate completions SHELL` prints \
                  shell completions."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Try flowgate on this machine: a private Open vSwitch with hypervisor
    /// bridges, a physical network, a public gateway and an external host,
    /// managed by `flowgate serve`, until Ctrl-C removes it all (needs root).
    ///
    /// Builds the test bed in network namespaces of its own (it works beside
    /// another Open vSwitch and touches nothing of the machine's network),
    /// runs the EC2 API on 127.0.0.1:8773 with an account, a public pool, a
    /// private network and an image, and prints the keys with ready-to-paste
    /// AWS CLI, boto3 and boto 2 snippets, and how to reach instances from
    /// the external host. Instances are network namespaces running their
    /// UserData. The README's "Try it" walks through the seed scenario on it.
    /// After a SIGKILL, `flowgate demo --sweep` removes what is left.
    Demo(demo::DemoArgs),
    /// Run flowgate: the EC2 Query API, the OpenFlow controller the
    /// hypervisors' bridges connect to, and /metrics, on the store in the
    /// data directory, until SIGINT/SIGTERM.
    ///
    /// Settings come from flags, then the configuration file, then defaults
    /// (docs/flowgate.example.toml lists them all): the API on
    /// 127.0.0.1:8773, OpenFlow on 127.0.0.1:6653, Prometheus metrics at
    /// http://127.0.0.1:9773/metrics, the store in /var/lib/flowgate. Logs
    /// go to stderr, filtered by RUST_LOG or else `log.level` (info).
    /// `flowgate admin` may change the same data directory while this runs;
    /// the change is seen within `store.poll_interval_ms` (250 ms). See
    /// docs/deployment.md for running it as a service.
    Serve(serve::ServeArgs),
    /// Operator commands: accounts and keys, public pools, private networks,
    /// images, hypervisors, instances, backup and restore. `--json` on any of
    /// them prints JSON.
    ///
    /// They work on the store in the data directory (--data-dir, else
    /// `data_dir` of the configuration file, else /var/lib/flowgate), each
    /// change in one transaction, also while `flowgate serve` runs there
    /// (serve picks it up within `store.poll_interval_ms`). Run them as the
    /// user serve runs as, so that the files they create stay readable to
    /// it. See docs/deployment.md and docs/hypervisors.md.
    Admin(admin::AdminArgs),
    /// Decode OpenFlow messages given in hex (as `ovs-ofctl ofp-print` does)
    /// and print them as flowgate's codec sees them.
    ///
    /// Whitespace in the hex is ignored; several messages may follow each
    /// other. Useful to check what a switch sent, byte for byte.
    OfpDecode {
        /// The message bytes in hexadecimal, e.g. 0400000800000001.
        hex: Vec<String>,
    },
    /// Explain what happens to one packet and why: which security group
    /// rule lets it through, or why it is dropped, and the NAT an Elastic
    /// IP applies, worked out from the model; with --live, also traced on
    /// the hypervisor's switch (ovs-appctl ofproto/trace) and compared.
    ///
    /// Examples: `flowgate trace 203.0.113.10 198.51.100.2 --port 22`
    /// (from the internet to an Elastic IP), `flowgate trace i-0abc…
    /// 10.1.0.7 --protocol icmp` (between instances).
    Trace(trace::TraceArgs),
    /// List the flows on a hypervisor's bridge grouped by the object that
    /// owns them (instance, security group rule, Elastic IP, network, the
    /// fixed pipeline), with packet counts; flows no object owns are
    /// listed last. Reads the bridge with ovs-ofctl, so run it where that
    /// reaches the bridge (or give --target).
    Flows(flows::FlowsArgs),
    /// Print a completion script for bash, zsh or fish (also elvish and
    /// powershell) on standard output.
    ///
    /// bash: `flowgate completions bash > /etc/bash_completion.d/flowgate`;
    /// zsh: `flowgate completions zsh > /usr/local/share/zsh/site-functions/_flowgate`;
    /// fish: `flowgate completions fish > ~/.config/fish/completions/flowgate.fish`.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Writes the completion script for `shell` to standard output.
fn completions(shell: clap_complete::Shell) -> Result<(), String> {
    use std::io::Write;
    // Generated into memory first: clap_complete panics on a failed write
    // (a closed pipe), and this way that is an ordinary error.
    let mut script = Vec::new();
    let mut command = <Cli as clap::CommandFactory>::command();
    clap_complete::generate(shell, &mut command, "flowgate", &mut script);
    match std::io::stdout().write_all(&script) {
        Ok(()) => Ok(()),
        // `flowgate completions bash | head` is not a failure.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(format!("cannot write the completion script: {e}")),
    }
}

/// Sends logs to stderr, filtered by `RUST_LOG` or else `level`.
pub fn init_logging(level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Admin(args) => admin::run(args),
        Command::OfpDecode { hex } => ofp::ofp_decode(&hex.concat()),
        Command::Trace(args) => trace::run(args),
        Command::Flows(args) => flows::run(args),
        Command::Completions { shell } => completions(shell),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("flowgate: {message}");
            ExitCode::FAILURE
        }
    }
}
