//! OpenFlow over TLS with a real Open vSwitch: certificates from `ovs-pki`,
//! `ovs-vsctl set-ssl` and an `ssl:` controller target on one side, the
//! real `flowgate serve` with `openflow.tls_listen` on the other. A switch
//! connecting without TLS, and one whose certificate another CA signed,
//! are refused (no session, no flows, `flowgate_tls_refused_total` rises);
//! the same switch with a certificate from the CA flowgate trusts connects
//! and gets its flows.
//!
//! Open vSwitch connects to `ssl:IP:PORT` only, so flowgate runs inside the
//! lab's namespace (its loopback is private: fixed ports never collide),
//! on SQLite, which needs no server outside the lab.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{FLOWGATE, Server, TempDir, run_bounded};
use testbed::{BackgroundProcess, Lab, wait_until};

/// Where flowgate listens inside the lab.
const TLS_LISTEN: &str = "127.0.0.1:6653";
const METRICS_URL: &str = "http://127.0.0.1:9773/metrics";

/// An `ovs-pki` directory: a switch CA and a controller CA.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn init(dir: &Path) -> Pki {
        ovs_pki(dir, &["init"]);
        Pki {
            dir: dir.to_path_buf(),
        }
    }

    /// A private key and a certificate for `name`, signed by the switch CA
    /// (`kind` "switch") or the controller CA ("controller"): (key, cert).
    fn sign(&self, name: &str, kind: &str) -> (PathBuf, PathBuf) {
        let (key, cert) = (
            self.dir.join(format!("{name}-privkey.pem")),
            self.dir.join(format!("{name}-cert.pem")),
        );
        // ovs-pki writes NAME-privkey.pem and NAME-cert.pem in its working
        // directory: run it in the PKI directory.
        let mut command = Command::new("ovs-pki");
        command
            .current_dir(&self.dir)
            .args(pki_location(&self.dir))
            .args(["req+sign", name, kind]);
        let out = run_bounded(command, Duration::from_secs(60));
        assert!(
            out.status.success(),
            "ovs-pki req+sign {name} {kind}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            key.exists() && cert.exists(),
            "ovs-pki made no {} or {}",
            key.display(),
            cert.display()
        );
        (key, cert)
    }

    /// The certificate of the CA that signs `kind` ("switch", "controller").
    fn ca(&self, kind: &str) -> PathBuf {
        self.dir.join(format!("pki/{kind}ca/cacert.pem"))
    }
}

/// Where ovs-pki keeps the CAs under `dir`, and its log (by default in
/// /var/log/openvswitch, outside the test's directory).
fn pki_location(dir: &Path) -> [String; 2] {
    [
        format!("--dir={}", dir.join("pki").display()),
        format!("--log={}", dir.join("ovs-pki.log").display()),
    ]
}

fn ovs_pki(dir: &Path, args: &[&str]) {
    std::fs::create_dir_all(dir).unwrap();
    let mut command = Command::new("ovs-pki");
    command.args(pki_location(dir)).args(args);
    let out = run_bounded(command, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "ovs-pki {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `flowgate serve` running inside a lab.
struct LabServer {
    // Dropped first: the process, then its data directory.
    process: BackgroundProcess,
    _data: Server,
}

impl LabServer {
    fn log(&self) -> String {
        self.process.stderr().unwrap_or_default()
    }

    /// The Prometheus text of the metrics endpoint, read from inside the lab.
    fn metrics(&self, lab: &Lab) -> Option<String> {
        lab.exec(&["curl", "-sf", "--max-time", "5", METRICS_URL]).ok()
    }

    /// One counter or gauge without labels; 0 when absent or unreadable.
    fn metric(&self, lab: &Lab, name: &str) -> u64 {
        self.metrics(lab).map(|text| sample(&text, name)).unwrap_or(0)
    }
}

/// The value of the first sample of `name` (with or without labels).
fn sample(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .find(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with([' ', '{']))
        })
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
}

/// Waits (bounded) for `condition`; fails with the server's log if it
/// never holds or the server exits.
fn wait(serve: &mut LabServer, what: &str, mut condition: impl FnMut(&LabServer) -> bool) {
    let mut exited = false;
    let waited = wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
        exited = !serve.process.is_running().unwrap();
        exited || condition(serve)
    });
    if exited || waited.is_err() {
        panic!(
            "{} waiting until {what}\nflowgate serve log:\n{}",
            if exited {
                "flowgate serve exited"
            } else {
                "timed out"
            },
            serve.log()
        );
    }
}

/// Flows on `bridge` as `ovs-ofctl dump-flows` lists them.
fn flows(lab: &Lab, bridge: &str) -> Vec<String> {
    lab.ofctl(&["-O", "OpenFlow13", "dump-flows", bridge])
        .unwrap()
        .lines()
        .filter(|line| line.contains("cookie="))
        .map(String::from)
        .collect()
}

/// Whether Open vSwitch reports the bridge's controller connection as up.
fn connected(lab: &Lab, bridge: &str) -> bool {
    lab.vsctl(&["--columns=is_connected", "--bare", "list", "controller"])
        .map(|out| out.trim() == "true")
        .unwrap_or_else(|e| panic!("reading {bridge}'s controller: {e}"))
}

#[test]
fn a_switch_with_a_certificate_of_the_trusted_ca_connects_and_one_without_tls_or_of_another_ca_is_refused() {
    let lab = Lab::start().expect("a lab");
    let bridge = "hv1";
    lab.add_bridge("phys").unwrap();
    lab.add_bridge(bridge).unwrap();
    let (uplink, _) = lab.add_patch(bridge, "phys").unwrap();

    let certificates = TempDir::new("tls-pki");
    let trusted = Pki::init(&certificates.0.join("trusted"));
    let other = Pki::init(&certificates.0.join("other"));
    let (controller_key, controller_cert) = trusted.sign("controller", "controller");
    let (switch_key, switch_cert) = trusted.sign("switch", "switch");
    let (rogue_key, rogue_cert) = other.sign("rogue", "switch");

    // SQLite: a PostgreSQL server of the test's own would listen outside
    // the lab, out of the server's reach. TLS does not depend on the store.
    let server = Server::prepare_on(None, "");
    server.admin(&["network", "add", "--cidr", "10.1.0.0/16", "--gateway", "10.1.0.1"]);
    server.admin(&[
        "hypervisor",
        "add",
        bridge,
        "--bridge",
        bridge,
        "--uplink",
        &uplink,
        "--driver",
        "external",
        "--ovsdb",
        &format!("unix:{}", lab.db_socket().display()),
    ]);
    // The whole configuration is this test's: metrics on, inside the lab.
    std::fs::write(
        &server.config,
        format!(
            "[store]\npoll_interval_ms = 50\n\
             [metrics]\nlisten = \"127.0.0.1:9773\"\n\
             [openflow]\nlisten = \"\"\ntls_listen = \"ssl:{TLS_LISTEN}\"\n\
             tls_cert = \"{}\"\ntls_key = \"{}\"\ntls_ca = \"{}\"\n",
            controller_cert.display(),
            controller_key.display(),
            trusted.ca("switch").display(),
        ),
    )
    .unwrap();
    let (config, data_dir) = (
        server.config.display().to_string(),
        server.data_dir().display().to_string(),
    );
    let process = lab
        .spawn(&[
            FLOWGATE,
            "serve",
            "--config",
            &config,
            "--data-dir",
            &data_dir,
            "--api-listen",
            "127.0.0.1:8773",
        ])
        .unwrap();
    let mut serve = LabServer {
        process,
        _data: server,
    };
    wait(&mut serve, "flowgate serves its metrics", |serve| {
        serve.metrics(&lab).is_some()
    });
    assert!(
        serve.log().contains(&format!("ssl:{TLS_LISTEN}")),
        "no TLS listener in the log:\n{}",
        serve.log()
    );
    // `openflow.listen = ""`: switches may connect over TLS only.
    assert!(
        !serve.log().contains("addr=tcp:"),
        "a plain TCP OpenFlow listener:\n{}",
        serve.log()
    );

    // A switch without TLS, so without a certificate: refused.
    let refused = |serve: &LabServer| serve.metric(&lab, "flowgate_tls_refused_total");
    lab.set_controller(bridge, &format!("tcp:{TLS_LISTEN}")).unwrap();
    wait(&mut serve, "the switch without TLS is refused", |serve| {
        refused(serve) >= 1
    });
    assert!(flows(&lab, bridge).is_empty(), "a switch without TLS got flows");
    lab.del_controller(bridge).unwrap();
    let without_tls = refused(&serve);

    // A switch whose certificate another CA signed. It trusts flowgate's
    // controller CA, so the refusal can only come from flowgate.
    let ssl = |key: &Path, cert: &Path| {
        let (key, cert, ca) = (
            key.display().to_string(),
            cert.display().to_string(),
            trusted.ca("controller"),
        );
        lab.vsctl(&["set-ssl", &key, &cert, &ca.display().to_string()])
            .unwrap();
    };
    ssl(&rogue_key, &rogue_cert);
    lab.set_controller(bridge, &format!("ssl:{TLS_LISTEN}")).unwrap();
    // rustls names the reason: UnknownIssuer, or BadSignature when the two
    // CAs' names coincide (ovs-pki names a CA after the second it was made).
    wait(
        &mut serve,
        "the switch of another CA is refused for its certificate",
        |serve| refused(serve) > without_tls && serve.log().contains("invalid peer certificate"),
    );
    let metrics = serve.metrics(&lab).unwrap();
    assert_eq!(sample(&metrics, "flowgate_switches_connected"), 0, "{metrics}");
    assert!(
        flows(&lab, bridge).is_empty(),
        "a refused switch got flows: {:?}",
        flows(&lab, bridge)
    );
    assert!(!connected(&lab, bridge), "Open vSwitch sees a connection");

    // The same switch with a certificate of the trusted CA. Reconnect at
    // once rather than after the switch's backoff.
    ssl(&switch_key, &switch_cert);
    lab.del_controller(bridge).unwrap();
    lab.set_controller(bridge, &format!("ssl:{TLS_LISTEN}")).unwrap();
    wait(
        &mut serve,
        "the switch with a trusted certificate connects and gets its flows",
        |serve| {
            let Some(metrics) = serve.metrics(&lab) else {
                return false;
            };
            let desired = sample(&metrics, "flowgate_flows_desired");
            sample(&metrics, "flowgate_switches_connected") == 1
                && desired > 0
                && sample(&metrics, "flowgate_flows_installed") == desired
        },
    );
    let metrics = serve.metrics(&lab).unwrap();
    let installed = flows(&lab, bridge);
    assert_eq!(
        installed.len() as u64,
        sample(&metrics, "flowgate_flows_desired"),
        "{installed:#?}"
    );
    // ovs-vswitchd writes the connection's state back to its database
    // every few seconds.
    wait(&mut serve, "Open vSwitch reports the connection up", |_| {
        connected(&lab, bridge)
    });
    println!("flowgate serve log:\n{}", serve.log());
}
