//! `flowgate-bench`: flowgate measured against the alternatives, every
//! figure next to its baseline from the same run.
//!
//! * `compare`: the same EC2-like policy built in OVN and in flowgate at
//!   several sizes (bulk creation to flows installed, one added rule, one
//!   added Elastic IP, a no-op, flows, memory), then the EC2 API against
//!   moto_server.
//! * `scale`: flowgate's compiler and controller with thousands of
//!   emulated hypervisors (crates/switch-emulator).
//!
//! `scripts/bench-compare.sh` builds what is needed and runs both; results
//! go to docs/benchmarks.md. Needs root (the OVN and flowgate sides run
//! Open vSwitch in private network namespaces).

mod compare;
mod error;
mod figures;
mod flowgate;
mod ovn;
mod probe;
mod scale;
mod util;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// flowgate side by side with OVN and moto_server, and at scale.
#[derive(Parser)]
#[command(name = "flowgate-bench")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The same policy in OVN and flowgate, then the EC2 API against moto_server.
    Compare {
        /// Policy sizes (instances; a tenth of them get Elastic IPs).
        #[arg(long, value_delimiter = ',', default_value = "100,1000")]
        sizes: Vec<usize>,
        /// Samples of each single change (medians are reported).
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// The flowgate binary (a release build).
        #[arg(long, default_value = "target/release/flowgate")]
        flowgate: PathBuf,
        /// moto_server of the repository's venv.
        #[arg(long, default_value = ".venv/bin/moto_server")]
        moto: PathBuf,
        /// Seconds per EC2 API measurement.
        #[arg(long, default_value_t = 5.0)]
        api_seconds: f64,
        /// Skip OVN.
        #[arg(long)]
        no_ovn: bool,
        /// Skip the EC2 API comparison.
        #[arg(long)]
        no_api: bool,
    },
    /// The compiler and controller with many emulated hypervisors.
    Scale {
        /// Hypervisors of each run (50 instances each by default).
        #[arg(long, value_delimiter = ',', default_value = "100,300,1000")]
        hypervisors: Vec<usize>,
        /// Instances per hypervisor.
        #[arg(long, default_value_t = 50)]
        instances_per_hypervisor: usize,
        /// The switch emulator binary (a release build).
        #[arg(long, default_value = "target/release/flowgate-switch-emulator")]
        emulator: PathBuf,
        /// Samples of each single change (medians are reported).
        #[arg(long, default_value_t = 5)]
        repeats: usize,
    },
    /// One size of `scale`, in this process (what `scale` runs as a child).
    #[command(hide = true)]
    ScaleOne {
        #[arg(long)]
        hypervisors: usize,
        #[arg(long)]
        instances_per_hypervisor: usize,
        #[arg(long)]
        emulator: PathBuf,
        #[arg(long)]
        repeats: usize,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let report = match args.command {
        Command::Compare {
            sizes,
            repeats,
            flowgate,
            moto,
            api_seconds,
            no_ovn,
            no_api,
        } => {
            flowgate::sweep();
            let api = (!no_api).then(|| {
                let mut api = ec2bench::Options::new();
                api.flowgate = flowgate.clone();
                api.moto = Some(moto);
                api.duration = Duration::from_secs_f64(api_seconds);
                api
            });
            compare::run(&compare::CompareOptions {
                sizes,
                repeats,
                flowgate,
                no_ovn,
                api,
            })
        }
        Command::Scale {
            hypervisors,
            instances_per_hypervisor,
            emulator,
            repeats,
        } => scale::run(&scale::ScaleOptions {
            hypervisors,
            instances_per_hypervisor,
            emulator,
            repeats,
        }),
        Command::ScaleOne {
            hypervisors,
            instances_per_hypervisor,
            emulator,
            repeats,
        } => {
            scale::run_one(hypervisors, instances_per_hypervisor, &emulator, repeats).map(|line| line + "\n")
        }
    };
    match report {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("flowgate-bench: {err}");
            ExitCode::FAILURE
        }
    }
}
