//! `flowgate demo` as the README runs it: started in the background with
//! `--json`, driven through the seed scenario with boto3 and through the
//! README's own walkthrough (AWS CLI) and boto3 snippet, its instances
//! reached through their Elastic IPs from the external host, then stopped
//! with SIGINT, after which none of its namespaces, bridges, ports or
//! daemons may be left.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{FLOWGATE, TempDir, python, repo, run_bounded};
use serde_json::Value;

/// How long the demo gets to be ready (a busy machine builds slowly).
const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// How long it gets to tear down after SIGINT.
const STOP_TIMEOUT: Duration = Duration::from_secs(90);

fn readme() -> String {
    std::fs::read_to_string(repo().join("README.md")).unwrap()
}

/// The fenced blocks of `language` in `text`, in order.
fn blocks(text: &str, language: &str) -> Vec<String> {
    let fence = format!("```{language}\n");
    text.split(&fence)
        .skip(1)
        .map(|rest| {
            rest.split_once("```\n")
                .expect("a closed code block")
                .0
                .to_owned()
        })
        .collect()
}

/// The README's "Try it" section.
fn try_it() -> String {
    let readme = readme();
    let (_, section) = readme
        .split_once("\n## Try it\n")
        .expect("README.md has a '## Try it' section");
    section.split("\n## ").next().unwrap().to_owned()
}

/// The arguments the README's run command gives `flowgate` (what follows
/// `cargo run --release --` on the first line of its first block).
fn readme_run_arguments() -> Vec<String> {
    let first = blocks(&readme(), "sh")
        .into_iter()
        .next()
        .expect("a first sh block");
    let line = first.lines().next().unwrap();
    let command = line.split('#').next().unwrap().trim();
    let (setup, run) = command.split_once(" && ").expect("setup && run");
    assert_eq!(setup, "./scripts/setup.sh", "{line}");
    let args = run
        .strip_prefix("cargo run --release -- ")
        .unwrap_or_else(|| panic!("the run command is not `cargo run --release -- ...`: {line}"));
    args.split_whitespace().map(str::to_owned).collect()
}

#[test]
fn the_readme_run_command_is_the_demo_and_the_tests_follow() {
    assert_eq!(readme_run_arguments(), ["demo"]);
    let first = blocks(&readme(), "sh").into_iter().next().unwrap();
    let second = first.lines().nth(1).expect("a second line");
    assert!(second.starts_with("./scripts/test.sh "), "{second}");
}

/// A command with its arguments.
fn command(program: &str, args: &[&str]) -> Command {
    let mut command = Command::new(program);
    command.args(args);
    command
}

/// Network namespaces, by name.
fn namespaces() -> BTreeSet<String> {
    let out = run_bounded(command("ip", &["netns", "list"]), Duration::from_secs(10));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Interfaces of the root namespace, by name.
fn root_links() -> BTreeSet<String> {
    let out = run_bounded(command("ip", &["-o", "link", "show"]), Duration::from_secs(10));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap().to_owned())
        .collect()
}

/// Bridges and ports of the machine's own Open vSwitch, if one runs.
fn system_ovs() -> Option<String> {
    if !Path::new("/var/run/openvswitch/db.sock").exists() {
        return None;
    }
    let out = run_bounded(
        command("ovs-vsctl", &["--timeout=5", "show"]),
        Duration::from_secs(10),
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A process as (pid, start time): a pid reused later does not count as
/// the same process.
fn identity(pid: u32) -> Option<(u32, String)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // After the command: state is field 3, start time field 22.
    (fields.first() != Some(&"Z")).then(|| (pid, fields.get(19).unwrap_or(&"").to_string()))
}

/// The processes running in a namespace.
fn processes_in(netns: &str) -> Vec<(u32, String)> {
    let out = run_bounded(command("ip", &["netns", "pids", netns]), Duration::from_secs(10));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|pid| pid.parse().ok())
        .filter_map(identity)
        .collect()
}

/// Pids of processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(needle) {
            found.push((pid, String::from_utf8_lossy(&cmdline).replace('\0', " ")));
        }
    }
    found
}

/// The demo running in the background; stopped (and, failing that,
/// killed and swept) on drop so a failed test leaves nothing either.
struct Demo {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: std::path::PathBuf,
}

impl Demo {
    fn start(args: &[String], dir: &Path) -> Demo {
        let stderr = dir.join("demo.err");
        let child = Command::new(FLOWGATE)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let mut demo = Demo {
            child,
            lines: mpsc::channel().1,
            stderr,
        };
        let stdout = demo.child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        demo.lines = rx;
        demo
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The first line on stdout, waiting at most `READY_TIMEOUT`.
    fn ready_line(&mut self) -> String {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match self.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => return line,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("the demo closed stdout before it was ready:\n{}", self.stderr())
                }
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "the demo exited with {status} before it was ready:\n{}",
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the demo was not ready within {READY_TIMEOUT:?}:\n{}",
                self.stderr()
            );
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} failed");
    }

    /// Sends SIGINT and waits (bounded) for the exit status.
    fn interrupt(&mut self) -> std::process::ExitStatus {
        self.signal("-INT");
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the demo did not stop within {STOP_TIMEOUT:?} of SIGINT:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = Command::new("kill")
                .args(["-INT", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + STOP_TIMEOUT;
            while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // Whatever a failed run left: its lab is named after its pid, now
        // dead, and its instances are plugged into the lab.
        let _ = testbed::sweep_stale();
    }
}

/// A file removed on drop.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn text(v: &Value, field: &str) -> String {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("no string {field} in {v}"))
        .to_owned()
}

/// The environment every client gets: the demo's exported variables and
/// no configuration of the user's that could redirect a client.
fn client_command(program: &Path, ready: &Value) -> Command {
    let mut command = Command::new(program);
    command
        .current_dir(repo())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("BOTO_CONFIG", "/dev/null")
        .env_remove("AWS_PROFILE");
    for (name, value) in ready["env"].as_object().expect("an env object") {
        command.env(name, value.as_str().expect("string values"));
    }
    command
}

fn passed(what: &str, out: &std::process::Output, demo: &Demo) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}\ndemo:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        demo.stderr()
    );
    println!("{what}:\n{stdout}");
    stdout
}

#[test]
fn the_demo_runs_the_seed_scenario_and_leaves_nothing_behind() {
    let namespaces_before = namespaces();
    let links_before = root_links();
    let ovs_before = system_ovs();
    let dir = TempDir::new("demo");
    // The walkthrough writes its UserData there, as a reader would.
    let user_data = Path::new("/tmp/flowgate-web.sh");
    let _user_data = (!user_data.exists()).then(|| RemoveOnDrop(user_data.to_path_buf()));
    let data_dir = dir.0.join("store");

    // The README's command, with what a test needs: a free port, a store
    // it can read after the demo stopped.
    let mut args = readme_run_arguments();
    args.extend(["--json", "--api-listen", "127.0.0.1:0", "--data-dir"].map(String::from));
    args.push(data_dir.display().to_string());
    let mut demo = Demo::start(&args, &dir.0);
    let line = demo.ready_line();
    let ready: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    for field in [
        "endpoint",
        "access_key_id",
        "secret_access_key",
        "region",
        "image_id",
        "external_host",
        "public_cidr",
    ] {
        assert!(!text(&ready, field).is_empty(), "{field} is empty in {line}");
    }
    let pid = demo.child.id();
    assert_eq!(ready["pid"].as_u64(), Some(u64::from(pid)));
    let lab = text(&ready, "lab_netns");
    let ovs_rundir = text(&ready, "ovs_rundir");
    assert!(lab.starts_with(&format!("fgt-{pid}-")), "{lab}");

    // The seed scenario through boto3, against the endpoint as printed.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/demo_seed_boto3.py");
    let mut command = client_command(&python(), &ready);
    command
        .arg(&script)
        .current_dir(script.parent().unwrap())
        .env("FLOWGATE_ENDPOINT", text(&ready, "endpoint"))
        .env("FLOWGATE_REGION", text(&ready, "region"))
        .env("FLOWGATE_A_KEY", text(&ready, "access_key_id"))
        .env("FLOWGATE_A_SECRET", text(&ready, "secret_access_key"))
        .env("FLOWGATE_IMAGE_ID", text(&ready, "image_id"))
        .env("FLOWGATE_EXTERNAL_NS", text(&ready, "external_host"))
        .env("FLOWGATE_EXTERNAL_IP", text(&ready, "external_ip"));
    let out = passed(
        "demo_seed_boto3.py",
        &run_bounded(command, Duration::from_secs(300)),
        &demo,
    );
    assert!(out.contains("all checks passed"), "{out}");

    // The README's walkthrough, word for word, with the exported variables.
    let section = try_it();
    let walkthrough = blocks(&section, "sh")
        .into_iter()
        .nth(1)
        .expect("the walkthrough block");
    let mut command = client_command(Path::new("bash"), &ready);
    command.args(["-u", "-o", "pipefail", "-c", &walkthrough]);
    let out = passed(
        "the README's walkthrough",
        &run_bounded(command, Duration::from_secs(300)),
        &demo,
    );
    assert!(out.contains("no answer: the group lets nothing in yet"), "{out}");
    let instance_line = out
        .lines()
        .find(|l| l.starts_with("i-"))
        .unwrap_or_else(|| panic!("no instance line in {out}"));
    let [_, private_ip, eip] = instance_line.split_whitespace().collect::<Vec<_>>()[..] else {
        panic!("not `id private public`: {instance_line}")
    };
    assert!(out.contains(&format!("hello from {private_ip}\n")), "{out}");
    assert!(
        out.contains(&text(&ready, "external_ip")),
        "the console shows the caller: {out}"
    );

    // The README's boto3 snippet lists that address and closes tcp 80.
    let snippet = blocks(&section, "python")
        .into_iter()
        .next()
        .expect("a python block");
    let mut command = client_command(&python(), &ready);
    command.args(["-c", &snippet]);
    let out = passed(
        "the README's boto3 snippet",
        &run_bounded(command, Duration::from_secs(60)),
        &demo,
    );
    assert!(out.contains(&format!("{eip} -> ")), "{out}");
    let external = text(&ready, "external_host");
    let curl = || {
        let mut c = Command::new("ip");
        c.args([
            "netns",
            "exec",
            &external,
            "curl",
            "-s",
            "-m",
            "2",
            &format!("http://{eip}/"),
        ]);
        run_bounded(c, Duration::from_secs(10)).status.success()
    };
    testbed::wait_until(Duration::from_secs(10), Duration::from_millis(200), || !curl())
        .unwrap_or_else(|_| panic!("tcp 80 stayed open after the README's revoke"));

    // Everything the demo runs, before it stops: its namespaces (the lab,
    // its hosts, every instance the store knows) and their processes.
    let admin = run_bounded(
        {
            let mut c = Command::new(FLOWGATE);
            c.args(["admin", "--json", "--data-dir"])
                .arg(&data_dir)
                .args(["instance", "list"]);
            c
        },
        Duration::from_secs(30),
    );
    let instances: Value = serde_json::from_slice(&admin.stdout).unwrap();
    let instance_ns: Vec<String> = instances
        .as_array()
        .unwrap()
        .iter()
        .map(|i| text(i, "interface_name"))
        .collect();
    assert_eq!(
        instance_ns.len(),
        2,
        "the script's and the walkthrough's: {instances}"
    );
    let ours: BTreeSet<String> = [lab.clone(), external.clone(), text(&ready, "gateway_host")]
        .into_iter()
        .chain(instance_ns.iter().cloned())
        .collect();
    let mut running: BTreeMap<String, Vec<(u32, String)>> = BTreeMap::new();
    for ns in &ours {
        assert!(namespaces().contains(ns), "{ns} is not there while the demo runs");
        running.insert(ns.clone(), processes_in(ns));
    }
    assert!(
        running[&lab].len() >= 2,
        "ovsdb-server and ovs-vswitchd run in the lab: {running:?}"
    );
    for ns in &instance_ns {
        assert!(
            !running[ns].is_empty(),
            "the instance {ns} runs its web server: {running:?}"
        );
    }
    let daemons = processes_mentioning(&ovs_rundir);
    assert!(daemons.len() >= 2, "the lab's daemons: {daemons:?}");
    let bridges: Vec<String> = ready["bridges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(bridges.len(), 2);

    let status = demo.interrupt();
    let log = demo.stderr();
    assert!(
        status.success(),
        "the demo exited with {status} after SIGINT:\n{log}"
    );
    let extra: Vec<String> = demo.lines.try_iter().collect();
    assert!(extra.is_empty(), "more than one line on stdout: {extra:?}");

    // No namespace of the demo...
    assert!(
        ours.is_disjoint(&namespaces_before),
        "names of the demo existed before it started: {ours:?}"
    );
    let left: Vec<String> = namespaces()
        .into_iter()
        .filter(|ns| ours.contains(ns) || ns.starts_with(&format!("fgt-{pid}-")))
        .collect();
    assert!(left.is_empty(), "namespaces left: {left:?}\n{log}");
    // ... no process it ran, daemons included ...
    for (ns, processes) in &running {
        for (pid, started) in processes {
            assert_ne!(
                identity(*pid).as_ref(),
                Some(&(*pid, started.clone())),
                "process {pid} of {ns} survived\n{log}"
            );
        }
    }
    let daemons = processes_mentioning(&ovs_rundir);
    assert!(daemons.is_empty(), "processes of the lab survived: {daemons:?}");
    // ... no bridge, port or file of its Open vSwitch ...
    assert!(!Path::new(&ovs_rundir).exists(), "{ovs_rundir} survived");
    let ports: BTreeSet<String> = bridges
        .iter()
        .cloned()
        .chain([text(&ready, "physical_bridge"), "ovs-netdev".to_owned()])
        .chain(instance_ns.iter().cloned())
        .collect();
    let new_links: BTreeSet<String> = root_links().difference(&links_before).cloned().collect();
    assert!(
        new_links
            .iter()
            .all(|l| !ports.contains(l) && !l.starts_with("patch") && !l.starts_with("h-")),
        "bridges or ports of the demo in the root namespace: {new_links:?}"
    );
    // ... and the machine's own Open vSwitch, if any, untouched.
    assert_eq!(system_ovs(), ovs_before, "the system's Open vSwitch changed");
    // The store the user asked for is kept.
    assert!(
        store::sqlite_path(&data_dir).exists(),
        "the --data-dir store was removed"
    );
    assert!(log.contains("stopped; no namespace"), "{log}");
}
