//! kill -9 of the controller process: traffic keeps flowing through the
//! flows the switch has (`fail_mode=secure`), and a restarted controller
//! that finds them in place sends no flow-mod at all.
//!
//! The controller runs in a child process (this test binary re-executed
//! with a filter that selects `controller_child_process`), so that it can
//! really be killed.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Bed, DPID, FORWARDING, Harness, duration_of, forwarding_flows, packets_of, ping_counts};
use controller::ControllerConfig;

const SOCKET_ENV: &str = "FLOWGATE_TEST_CONTROLLER_SOCKET";

/// The controller process of `the_data_plane_survives_a_controller_kill`.
/// It only does something when that test starts it.
#[test]
#[ignore = "runs as a child process of the_data_plane_survives_a_controller_kill"]
fn controller_child_process() {
    let Ok(socket) = std::env::var(SOCKET_ENV) else {
        return;
    };
    // Published before listening: the switch, reconnecting as fast as it
    // can, must not find a controller that wants no flows.
    let mut generation = 0;
    let h = Harness::start_with_desired(PathBuf::from(socket), ControllerConfig::default(), |c| {
        generation = c
            .desired()
            .update(DPID, |set| set.set_owner(FORWARDING, forwarding_flows()));
    });
    h.rt.block_on(
        h.controller
            .wait_synced(DPID, generation, Duration::from_secs(60)),
    )
    .unwrap();
    println!(
        "synced flow_mods_total={}",
        h.controller.metrics().flow_mods_total()
    );
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// A controller child process, SIGKILLed when dropped.
struct ControllerProcess {
    child: Child,
    stdout: PathBuf,
}

impl ControllerProcess {
    fn start(socket: &Path, stdout: PathBuf) -> ControllerProcess {
        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                "controller_child_process",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(SOCKET_ENV, socket)
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        ControllerProcess { child, stdout }
    }

    /// Waits for the child's "synced" line and returns the flow-mods it
    /// sent to get there.
    fn wait_synced(&self) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = std::fs::read_to_string(&self.stdout).unwrap_or_default();
            if let Some(rest) = text.split("synced flow_mods_total=").nth(1) {
                return rest.split_whitespace().next().unwrap().parse().unwrap();
            }
            assert!(Instant::now() < deadline, "controller never synced: {text}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill_9(&mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_data_plane_survives_a_controller_kill() {
    let bed = Bed::new();
    let mut first = ControllerProcess::start(&bed.socket, bed.lab.run_dir().join("controller-1.out"));
    bed.connect();
    assert_eq!(first.wait_synced(), 2, "a fresh switch needs both flows");
    let installed_at = Instant::now();

    // Ping across the kill and the restart, ten packets a second.
    let mut ping = bed
        .h1
        .spawn(&[
            "ping",
            "-c",
            "60",
            "-i",
            "0.1",
            "-W",
            "1",
            &bed.h2.ip().to_string(),
        ])
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    first.kill_9();
    std::thread::sleep(Duration::from_secs(2));
    let second = ControllerProcess::start(&bed.socket, bed.lab.run_dir().join("controller-2.out"));
    assert_eq!(second.wait_synced(), 0, "nothing changed: no flow-mod");
    ping.wait_timeout(Duration::from_secs(30)).unwrap();
    let (sent, received) = ping_counts(&ping.stdout().unwrap());
    assert_eq!(
        (sent, received),
        (60, 60),
        "no packet lost while the controller was dead"
    );

    // The flows are the ones installed before the kill: their age covers it
    // and their counters kept counting. The datapath hands its counters to
    // the OpenFlow tables periodically, so wait for them to catch up.
    let counted = testbed::wait_until(Duration::from_secs(10), Duration::from_millis(200), || {
        bed.dump().iter().all(|f| packets_of(f) >= 60)
    });
    // Taken before the dump: a flow untouched since the install is at
    // least this old when dumped, however slow the dump.
    let age = installed_at.elapsed().as_secs_f64();
    let flows = bed.dump();
    assert!(counted.is_ok(), "counters stopped short of the pings: {flows:?}");
    for flow in flows {
        assert!(
            duration_of(&flow) >= age - 1.0,
            "flow younger than the first install: {flow}"
        );
    }
}
