//! The `flowgate` command: one binary for operators and developers.
//!
//! flowgate gives a private cloud on KVM and Open vSwitch what tenants know
//! from EC2: Elastic IPs and Security Groups, driven through the EC2 Query
//! API and enforced by an OpenFlow controller. This binary is a thin layer
//! over the workspace's crates; each subcommand parses its arguments and
//! hands over to the crate that does the work.

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
                  This build provides the OpenFlow toolbox; the API server, controller and demo \
                  arrive in later releases (see README.md)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Decode OpenFlow messages given in hex (as `ovs-ofctl ofp-print` does)
    /// and print them as flowgate's codec sees them.
    ///
    /// Whitespace in the hex is ignored; several messages may follow each
    /// other. Useful to check what a switch sent, byte for byte.
    OfpDecode {
        /// The message bytes in hexadecimal, e.g. 0400000800000001.
        hex: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::OfpDecode { hex } => ofp_decode(&hex.concat()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("flowgate: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Decodes and prints every message in `hex`.
fn ofp_decode(hex: &str) -> Result<(), String> {
    let bytes = parse_hex(hex)?;
    let mut rest = bytes.as_slice();
    if rest.is_empty() {
        return Err("no bytes given".to_string());
    }
    while !rest.is_empty() {
        let len = match openflow::message_length(rest) {
            Ok(Some(len)) if len <= rest.len() => len,
            Ok(_) => return Err(format!("truncated message: {} bytes left", rest.len())),
            Err(e) => return Err(format!("cannot frame message: {e}")),
        };
        let msg =
            openflow::OfpMessage::decode(&rest[..len]).map_err(|e| format!("cannot decode message: {e}"))?;
        println!("{} ({}) xid={:#x}", msg.body.name(), msg.version, msg.xid);
        println!("{:#?}", msg.body);
        rest = &rest[len..];
    }
    Ok(())
}

fn parse_hex(hex: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if digits.len() % 2 != 0 {
        return Err("odd number of hex digits".to_string());
    }
    digits
        .chunks(2)
        .map(|pair| {
            let s = std::str::from_utf8(pair).map_err(|_| "not hex".to_string())?;
            u8::from_str_radix(s, 16).map_err(|_| format!("{s:?} is not a hex byte"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_parsing_ignores_spaces_and_refuses_garbage() {
        assert_eq!(parse_hex("04 00 0008").unwrap(), vec![4, 0, 0, 8]);
        assert!(parse_hex("040").is_err());
        assert!(parse_hex("zz").is_err());
    }

    #[test]
    fn decodes_a_hello() {
        assert!(ofp_decode("0400000800000001").is_ok());
        assert!(ofp_decode("04000010").is_err());
        assert!(ofp_decode("").is_err());
    }
}
