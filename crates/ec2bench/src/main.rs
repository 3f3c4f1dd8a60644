//! `ec2bench`: flowgate's EC2 API against moto_server, side by side (see
//! the library, and `scripts/bench-ec2api.sh`). Prints a Markdown table.

use std::path::PathBuf;
use std::time::Duration;

use ec2bench::Options;

/// The options, and whether to compare the stores (`--postgres`) instead of moto.
fn parse_args() -> Result<(Options, bool), String> {
    let mut options = Options::new();
    let mut stores = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--flowgate" => options.flowgate = PathBuf::from(value()?),
            "--moto" => options.moto = Some(PathBuf::from(value()?)),
            "--no-moto" => options.moto = None,
            "--postgres" => stores = true,
            "--seconds" => {
                options.duration =
                    Duration::from_secs_f64(value()?.parse().map_err(|_| "--seconds takes a number")?)
            }
            "--clients" => {
                options.clients = value()?
                    .split(',')
                    .map(|c| c.parse().map_err(|_| format!("bad client count {c}")))
                    .collect::<Result<_, _>>()?
            }
            "-h" | "--help" => {
                println!(
                    "ec2bench [--flowgate PATH] [--moto PATH | --no-moto | --postgres] [--seconds N] [--clients 1,16]\n\
                     Measures flowgate's EC2 API against moto_server, side by side; prints a Markdown table.\n\
                     --postgres: compares flowgate on SQLite, on PostgreSQL with one node and with two\n\
                     nodes instead, and measures the propagation delay between the two nodes."
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok((options, stores))
}

fn main() {
    let report = parse_args().and_then(|(options, stores)| {
        if stores {
            ec2bench::run_stores(&options)
        } else {
            ec2bench::run(&options)
        }
    });
    match report {
        Ok(report) => print!("{report}"),
        Err(err) => {
            eprintln!("ec2bench: {err}");
            std::process::exit(1);
        }
    }
}
