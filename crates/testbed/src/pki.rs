//! Certificates for tests of TLS listeners: a CA and a server certificate
//! it signed, for 127.0.0.1 and localhost, made with `openssl`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::Result;
use crate::cmd::run_ok;

/// The files [`make_certificates`] wrote.
#[derive(Debug, Clone)]
pub struct TestCertificates {
    /// The CA's certificate (PEM), for clients to trust.
    pub ca: PathBuf,
    /// The CA's private key (PEM): a key that is not the server's.
    pub ca_key: PathBuf,
    /// The server's certificate (PEM), valid for 127.0.0.1 and localhost.
    pub server: PathBuf,
    /// The server's private key (PEM).
    pub server_key: PathBuf,
}

/// What a server certificate may do: serve TLS, under the names clients
/// connect with.
const SERVER_EXTENSIONS: &str = "basicConstraints = critical, CA:FALSE\n\
    keyUsage = critical, digitalSignature\n\
    extendedKeyUsage = serverAuth\n\
    subjectAltName = IP:127.0.0.1, DNS:localhost\n\
    subjectKeyIdentifier = hash\n\
    authorityKeyIdentifier = keyid, issuer\n";

/// Makes a CA (`ca.pem`, `ca-key.pem`) and a server certificate it signed
/// (`server.pem`, `server-key.pem`) in `dir`; P-256 keys, valid two days.
pub fn make_certificates(dir: &Path) -> Result<TestCertificates> {
    std::fs::write(dir.join("server.ext"), SERVER_EXTENSIONS).map_err(|source| crate::Error::Io {
        context: format!("writing {}", dir.join("server.ext").display()),
        source,
    })?;
    let key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let openssl = |args: &[&str]| {
        run_ok(
            Command::new("openssl").current_dir(dir).args(args),
            Duration::from_secs(60),
        )
        .map(drop)
    };
    openssl(
        &[
            &[
                "req",
                "-x509",
                "-days",
                "2",
                "-keyout",
                "ca-key.pem",
                "-out",
                "ca.pem",
            ][..],
            &key,
            &["-subj", "/CN=flowgate test CA"],
        ]
        .concat(),
    )?;
    openssl(
        &[
            &["req", "-new", "-keyout", "server-key.pem", "-out", "server.csr"][..],
            &key,
            &["-subj", "/CN=127.0.0.1"],
        ]
        .concat(),
    )?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
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
        "server.pem",
    ])?;
    Ok(TestCertificates {
        ca: dir.join("ca.pem"),
        ca_key: dir.join("ca-key.pem"),
        server: dir.join("server.pem"),
        server_key: dir.join("server-key.pem"),
    })
}
