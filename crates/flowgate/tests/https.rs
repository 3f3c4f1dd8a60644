//! The EC2 API over HTTPS (`api.tls_cert`, `api.tls_key`) with the real
//! clients: a CA and a server certificate for 127.0.0.1 made with the
//! `openssl` command (`testbed::pki`); boto3 (`verify=`) and the AWS CLI (`--ca-bundle`)
//! trusting that CA allocate and list addresses, and refuse the server
//! without it (tests/clients/https_clients.py).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Server, TempDir, run_bounded};
use testbed::pki::make_certificates;

#[test]
fn boto3_and_the_aws_cli_over_https_trusting_the_ca() {
    let pki = TempDir::new("https-pki");
    let certificates = make_certificates(&pki.0).unwrap();
    let (ca, cert, key) = (certificates.ca, certificates.server, certificates.server_key);
    let mut server = Server::prepare(&format!(
        "[api]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        cert.display(),
        key.display()
    ));
    server.add_pool();
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
    let certificates = make_certificates(&pki.0).unwrap();
    let cert = certificates.server;
    // The CA's own key with the server's certificate: a pair rustls refuses.
    let wrong_key = certificates.ca_key;
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
