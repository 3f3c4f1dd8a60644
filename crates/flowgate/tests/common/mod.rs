//! A real `flowgate serve` on a private data directory and port, the
//! `flowgate admin` CLI against it, and the Python clients of the repo's
//! venv. Everything is cleaned up on drop; every wait is bounded.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod cloud;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const FLOWGATE: &str = env!("CARGO_BIN_EXE_flowgate");
pub const POOL_CIDR: &str = "203.0.113.0/24";

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The venv's Python, made by scripts/setup.sh.
pub fn python() -> PathBuf {
    let python = repo().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run ./scripts/setup.sh first",
        python.display()
    );
    python
}

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "flowgate-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub use testbed::free_port;

/// Runs a command with a deadline; kills it when the deadline passes.
/// Its output is drained while it runs, so a command that prints more than
/// a pipe holds does not stall; and once it is gone, what it printed is
/// taken even if a process it left behind still holds its pipes open.
pub fn run_bounded(mut command: Command, limit: Duration) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = Drained::start(Box::new(child.stdout.take().unwrap()));
    let stderr = Drained::start(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{command:?} did not finish within {limit:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&stdout.finish()),
                String::from_utf8_lossy(&stderr.finish())
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.finish(),
        stderr: stderr.finish(),
    }
}

/// A pipe read to its end by a thread of its own, into a shared buffer.
struct Drained {
    bytes: Arc<std::sync::Mutex<Vec<u8>>>,
    done: std::sync::mpsc::Receiver<()>,
}

impl Drained {
    fn start(mut pipe: Box<dyn Read + Send>) -> Drained {
        let bytes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, done) = std::sync::mpsc::channel();
        let sink = bytes.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                sink.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(&chunk[..n]);
            }
            let _ = tx.send(());
        });
        Drained { bytes, done }
    }

    /// What was read, once the pipe ends or, if a leftover process holds
    /// it open, after a few seconds.
    fn finish(self) -> Vec<u8> {
        let _ = self.done.recv_timeout(Duration::from_secs(5));
        std::mem::take(&mut *self.bytes.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Keys of an account made with `flowgate admin account create`.
#[derive(Debug, Clone)]
pub struct Keys {
    pub account_id: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// The store the servers of this test use: SQLite in their data
/// directories, or, with `FLOWGATE_TEST_STORE=postgres` (as
/// `scripts/test.sh` runs these tests a second time), a private PostgreSQL
/// server of the test's own (crates/pgtest): the same tests on both stores.
pub fn test_postgres() -> Option<Arc<pgtest::Postgres>> {
    match std::env::var("FLOWGATE_TEST_STORE").as_deref() {
        Ok("postgres") => Some(Arc::new(
            pgtest::Postgres::start().expect("a private PostgreSQL server"),
        )),
        Ok("sqlite") | Ok("") | Err(_) => None,
        Ok(other) => panic!("FLOWGATE_TEST_STORE={other:?}: expected sqlite or postgres"),
    }
}

/// What `flowgate serve` logs once everything has started.
const SERVING: &str = "flowgate serving";

/// A running `flowgate serve` with its data directory.
pub struct Server {
    pub dir: TempDir,
    pub port: u16,
    pub child: Option<Child>,
    pub config: PathBuf,
    /// The PostgreSQL server holding the store (shared by the servers of a
    /// multi-node test), if not SQLite; dropped after the server is killed.
    pub postgres: Option<Arc<pgtest::Postgres>>,
    /// Where switches connect over TCP (on 127.0.0.1 of `netns`).
    pub openflow_port: u16,
    /// The network namespace the server and its clients run in (a lab's,
    /// whose loopback is private), if not this process's.
    pub netns: Option<String>,
}

impl Server {
    /// A data directory with a pool, a network and an image, and a server on it.
    pub fn start(config_toml: &str) -> Server {
        let mut server = Server::prepare(config_toml);
        server.add_pool();
        server.admin(&["network", "add", "--cidr", "10.0.0.0/24", "--gateway", "10.0.0.1"]);
        server.launch();
        server
    }

    /// Adds the public pool [`POOL_CIDR`] (gateway 203.0.113.1).
    pub fn add_pool(&self) {
        self.admin(&["pool", "add", "--cidr", POOL_CIDR, "--gateway", "203.0.113.1"]);
    }

    /// A data directory with nothing in it and a configured, not yet
    /// launched server: the caller adds what it needs with `admin`, then
    /// calls [`Server::launch`].
    pub fn prepare(config_toml: &str) -> Server {
        Server::prepare_on(test_postgres(), config_toml)
    }

    /// Like [`Server::prepare`], with the store on `postgres` (SQLite if
    /// `None`): servers prepared on the same one are nodes of one cloud.
    pub fn prepare_on(postgres: Option<Arc<pgtest::Postgres>>, config_toml: &str) -> Server {
        let dir = TempDir::new("serve");
        let config = dir.0.join("flowgate.toml");
        let url = postgres
            .as_ref()
            .map(|pg| format!("url = \"{}\"\n", pg.url()))
            .unwrap_or_default();
        // Every server of a parallel test run needs ports of its own: the
        // OpenFlow listener gets a free one, the metrics endpoint none
        // unless the test configures it (with a free port).
        let metrics = if config_toml.contains("[metrics]") {
            ""
        } else {
            "[metrics]\nlisten = \"\"\n"
        };
        std::fs::write(
            &config,
            format!("[store]\n{url}poll_interval_ms = 50\n{metrics}{config_toml}"),
        )
        .unwrap();
        Server {
            dir,
            port: free_port(),
            child: None,
            config,
            postgres,
            openflow_port: free_port(),
            netns: None,
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.0.join("data")
    }

    /// Starts the server process and waits until it accepts connections.
    pub fn launch(&mut self) {
        // The log is appended to by every run of this server.
        let serving_before = self.log().matches(SERVING).count();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.0.join("serve.log"))
            .unwrap();
        let child = self
            .command(FLOWGATE)
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--api-listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--openflow-listen")
            .arg(format!("127.0.0.1:{}", self.openflow_port))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        // The API's port is bound first, and connections to it wait in the
        // kernel while everything else starts (and may fail: another port
        // taken, the database unreachable). Serve says when it is serving.
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.log().matches(SERVING).count() <= serving_before || !self.listening() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("flowgate serve exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "flowgate serve did not start serving within 20 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `program`, to run where the server runs: in its network namespace
    /// if it has one. `nsenter` enters the network namespace only: `ip
    /// netns exec` would also give the program a mount namespace of its
    /// own, where the namespaces the netns driver makes for instances
    /// would be mounted out of everyone else's sight. Either execs the
    /// program, so the child is the program itself.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        match &self.netns {
            Some(ns) => {
                let mut command = Command::new("nsenter");
                command
                    .arg(format!("--net=/run/netns/{ns}"))
                    .arg("--")
                    .arg(program);
                command
            }
            None => Command::new(program),
        }
    }

    /// Whether the API accepts connections.
    fn listening(&self) -> bool {
        match &self.netns {
            None => {
                let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
                TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            }
            Some(_) => self
                .command("nc")
                .args(["-z", "-w", "1", "127.0.0.1", &self.port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
        }
    }

    /// Kills the server at once (SIGKILL): only what was committed may survive.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("serve.log")).unwrap_or_default()
    }

    /// Runs `flowgate admin --data-dir … ARGS`; panics unless it succeeds.
    pub fn admin(&self, args: &[&str]) -> String {
        let out = self.admin_output(args);
        assert!(
            out.status.success(),
            "flowgate admin {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn admin_output(&self, args: &[&str]) -> Output {
        let mut command = Command::new(FLOWGATE);
        command
            .arg("admin")
            .arg("--config")
            .arg(&self.config)
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(args);
        run_bounded(command, Duration::from_secs(30))
    }

    /// Creates an account; returns its keys.
    pub fn account(&self, name: &str) -> Keys {
        let json = self.admin(&["account", "create", name, "--json"]);
        Keys {
            account_id: field(&json, "account_id"),
            access_key_id: field(&json, "access_key_id"),
            secret_access_key: field(&json, "secret_access_key"),
        }
    }

    pub fn image(&self, name: &str) -> String {
        field(&self.admin(&["image", "add", name, "--json"]), "image_id")
    }

    /// Runs a client script of tests/clients with the venv's Python.
    /// `accounts` are exported as FLOWGATE_<LETTER>_KEY / _SECRET.
    pub fn client(&self, script: &str, args: &[&str], accounts: &[(&str, &Keys)], image: &str) -> Output {
        self.client_env(script, args, accounts, image, &[], Duration::from_secs(120))
    }

    /// Like [`Server::client`], with more environment (later entries win)
    /// and a deadline of its own.
    pub fn client_env(
        &self,
        script: &str,
        args: &[&str],
        accounts: &[(&str, &Keys)],
        image: &str,
        env: &[(&str, String)],
        deadline: Duration,
    ) -> Output {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients");
        let mut command = self.command(python());
        command
            .arg(dir.join(script))
            .args(args)
            .current_dir(&dir)
            .env("FLOWGATE_PORT", self.port.to_string())
            .env("FLOWGATE_IMAGE_ID", image)
            .env("FLOWGATE_POOL_CIDR", POOL_CIDR)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("BOTO_CONFIG", "/dev/null")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY");
        for (letter, keys) in accounts {
            command.env(format!("FLOWGATE_{letter}_KEY"), &keys.access_key_id);
            command.env(format!("FLOWGATE_{letter}_SECRET"), &keys.secret_access_key);
        }
        for (name, value) in env {
            command.env(name, value);
        }
        run_bounded(command, deadline)
    }

    /// Like [`Server::client`], and asserts the script passed.
    pub fn client_ok(&self, script: &str, args: &[&str], accounts: &[(&str, &Keys)], image: &str) -> String {
        let out = self.client(script, args, accounts, image);
        self.passed(script, out)
    }

    /// Like [`Server::client_env`] without arguments, and asserts the
    /// script passed.
    pub fn client_env_ok(
        &self,
        script: &str,
        accounts: &[(&str, &Keys)],
        image: &str,
        env: &[(&str, String)],
        deadline: Duration,
    ) -> String {
        self.client_args_env_ok(script, &[], accounts, image, env, deadline)
    }

    /// Like [`Server::client_env`], and asserts the script passed.
    pub fn client_args_env_ok(
        &self,
        script: &str,
        args: &[&str],
        accounts: &[(&str, &Keys)],
        image: &str,
        env: &[(&str, String)],
        deadline: Duration,
    ) -> String {
        let out = self.client_env(script, args, accounts, image, env, deadline);
        self.passed(script, out)
    }

    fn passed(&self, script: &str, out: Output) -> String {
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{script} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}\nserver log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        assert!(
            stdout.contains("all checks passed"),
            "{script} did not finish:\n{stdout}"
        );
        println!("{script}:\n{stdout}");
        stdout
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A string field of a one-line JSON object (flowgate admin --json output).
pub fn field(json: &str, name: &str) -> String {
    let needle = format!("\"{name}\":\"");
    let start = json
        .find(&needle)
        .unwrap_or_else(|| panic!("no {name} in {json}"))
        + needle.len();
    let end = json[start..].find('"').unwrap() + start;
    json[start..end].to_string()
}

/// One SigV4-signed POST of `body` to the server on `port` over a fresh
/// connection: (status, body), or None if the server is gone.
pub fn signed_post(port: u16, keys: &Keys, body: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    stream
        .write_all(signed_request(port, keys, body).as_bytes())
        .ok()?;
    read_answer(&mut stream)
}

/// The text of a POST of `body` to the server on `port`, signed (SigV4)
/// with `keys`, asking for the connection to be closed after its answer.
pub fn signed_request(port: u16, keys: &Keys, body: &str) -> String {
    let host = format!("127.0.0.1:{port}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let headers = ec2api::auth::sign_v4_post(
        &host,
        body.as_bytes(),
        &keys.access_key_id,
        &keys.secret_access_key,
        "flowgate-1",
        &ec2api::auth::format_amz_date(now),
    );
    let mut request = String::from("POST / HTTP/1.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    request
}

/// The status and body of the answer read from `stream` up to its end;
/// `None` if it broke or timed out first.
pub fn read_answer(stream: &mut TcpStream) -> Option<(u16, String)> {
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let status = answer.split_whitespace().nth(1)?.parse().ok()?;
    let body = answer.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

/// The texts between each `open` and the `close` after it.
pub fn between<'a>(text: &'a str, open: &str, close: &str) -> Vec<&'a str> {
    text.split(open)
        .skip(1)
        .filter_map(|rest| rest.split(close).next())
        .collect()
}

/// Waits (at most 10 s) until the server on `port` accepts `keys`: an
/// account made with `flowgate admin` reaches a running server only at its
/// next look at the store (`store.poll_interval_ms`).
pub fn wait_for_keys(port: u16, keys: &Keys) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match signed_post(port, keys, "Action=DescribeRegions&Version=2016-11-15") {
            Some((200, _)) => return,
            answer => assert!(
                Instant::now() < deadline,
                "the server did not accept {} within 10 s: {answer:?}",
                keys.access_key_id
            ),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The value of the sample `name` (no labels) in the metrics on `port`.
pub fn scrape_metric(port: u16, name: &str) -> Option<String> {
    let text = scrape_metrics(port)?;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ').map(str::to_string))
}

/// The body of `GET /metrics` on `port`, if it answers 200.
pub fn scrape_metrics(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// Allocation ids and public IPs an account's DescribeAddresses lists on
/// the server at `port`.
pub fn list_addresses(port: u16, keys: &Keys) -> (HashSet<String>, Vec<String>) {
    let (status, body) =
        signed_post(port, keys, "Action=DescribeAddresses&Version=2016-11-15").expect("the server answers");
    assert_eq!(status, 200, "{body}");
    let ids = between(&body, "<allocationId>", "</allocationId>")
        .into_iter()
        .map(String::from)
        .collect();
    let ips = between(&body, "<publicIp>", "</publicIp>")
        .into_iter()
        .map(String::from)
        .collect();
    (ids, ips)
}

/// Checks that the server at `port` lists every allocation in
/// `acknowledged` and holds no public IP twice; `who` names the server in
/// failures. Returns how many allocations it lists.
pub fn assert_addresses_kept(port: u16, keys: &Keys, acknowledged: &[String], who: &str) -> usize {
    let (ids, ips) = list_addresses(port, keys);
    let lost: Vec<&String> = acknowledged.iter().filter(|id| !ids.contains(*id)).collect();
    assert!(
        lost.is_empty(),
        "{who}: {} of {} acknowledged allocations lost: {lost:?}",
        lost.len(),
        acknowledged.len()
    );
    assert_eq!(
        ips.len(),
        ips.iter().collect::<HashSet<_>>().len(),
        "{who}: an address is held twice"
    );
    ids.len()
}
