//! The EC2 API over HTTPS (`api.tls_cert`, `api.tls_key`) with the real
//! clients: a CA and a server certificate for 127.0.0.1 made with the
//! `openssl` command; boto3 (`verify=`) and the AWS CLI (`--ca-bundle`)
//! trusting that CA allocate and list addresses, and refuse the server
//! without it (tests/clients/https_clients.py).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Server, TempDir, run_bounded};

/// The extensions of the server's certificate: what a browser-grade
/// client (Python's ssl, under boto3 and the AWS CLI) checks.
const SERVER_EXTENSIONS: &str = "\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
";

fn openssl(dir: &Path, args: &[&str]) {
    let mut command = Command::new("openssl");
    command.current_dir(dir).args(args);
    let out = run_bounded(command, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for 127.0.0.1 it signed, in `dir`:
/// (CA certificate, server certificate, server key).
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    let args = |fixed: &str, subject: &str| -> Vec<String> {
        format!("{fixed} {ec}")
            .split_whitespace()
            .map(String::from)
            .chain(["-subj".to_string(), subject.to_string()])
            .collect()
    };
    let ca_args = args(
        "req -x509 -days 2 -keyout ca-key.pem -out ca.pem",
        "/CN=flowgate test CA",
    );
    openssl(dir, &ca_args.iter().map(String::as_str).collect::<Vec<_>>());
    let request_args = args("req -new -keyout api-key.pem -out api.csr", "/CN=127.0.0.1");
    openssl(dir, &request_args.iter().map(String::as_str).collect::<Vec<_>>());
    std::fs::write(dir.join("server.ext"), SERVER_EXTENSIONS).unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "api.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "api-cert.pem",
        ],
    );
    (
        dir.join("ca.pem"),
        dir.join("api-cert.pem"),
        dir.join("api-key.pem"),
    )
}

#[test]
fn boto3_and_the_aws_cli_over_https_trusting_the_ca() {
    let pki = TempDir::new("https-pki");
    let (ca, cert, key) = certificates(&pki.0);
    let mut server = Server::prepare(&format!(
        "[api]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        cert.display(),
        key.display()
    ));
    server.admin(&[
        "pool",
        "add",
        "--cidr",
        common::POOL_CIDR,
        "--gateway",
        "203.0.113.1",
    ]);
    let alice = server.account("alice");
    server.launch();
    server.client_env_ok(
        "https_clients.py",
        &[("A", &alice)],
        "ami-00000000",
        &[
            ("FLOWGATE_ENDPOINT", format!("https://127.0.0.1:{}", server.port)),
            ("FLOWGATE_CA_BUNDLE", ca.display().to_string()),
        ],
        Duration::from_secs(120),
    );
}

#[test]
fn serve_refuses_to_start_with_a_key_that_is_not_the_certificates() {
    let pki = TempDir::new("https-pki");
    let (ca, cert, _) = certificates(&pki.0);
    // The CA's own key with the server's certificate: a pair rustls refuses.
    let wrong_key = ca.with_file_name("ca-key.pem");
    let server = Server::prepare(&format!(
        "[api]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        cert.display(),
        wrong_key.display()
    ));
    let out = {
        let mut command = Command::new(common::FLOWGATE);
        command
            .args(["serve", "--config"])
            .arg(&server.config)
            .arg("--data-dir")
            .arg(server.data_dir())
            .args(["--api-listen", "127.0.0.1:0", "--openflow-listen", "127.0.0.1:0"]);
        run_bounded(command, Duration::from_secs(30))
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "serve started with a mismatched key:\n{stderr}"
    );
    assert!(
        stderr.contains("api TLS") && stderr.contains(&cert.display().to_string()),
        "the error names the files: {stderr}"
    );
}
