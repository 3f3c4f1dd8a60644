//! Scale smoke benchmark of the switch emulator: 200 emulated switches,
//! 1,000 flows each installed through one bundle per switch by a fake
//! controller, then read back with flow statistics.
//!
//! ```sh
//! cargo run --release -p switch-emulator --example scale [-- SWITCHES FLOWS]
//! ```
//!
//! The emulator runs in a child process (this same program, re-executed),
//! on one tokio thread, so that its resident memory is measured alone; the
//! fake controller runs here. Prints the time to install every flow
//! (bundle open, 1,000 adds, commit, barrier, on every switch at once), the
//! time to read them all back, the emulator's resident memory before and
//! after, and what the same flows would cost held as the codec's typed
//! values instead of compact bytes.

// A benchmark program: failing loudly on a broken setup is what it should do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use openflow::action::{Ct, CtZone, NX_CT_RECIRC_NONE, ct_flags};
use openflow::bundle::bundle_flags;
use openflow::oxm::ct_state;
use openflow::{
    Action, BundleAdd, BundleControl, BundleCtrlType, FlowMod, FlowStatsRequest, Hello, Instruction, Masked,
    Match, Message, MultipartAssembler, MultipartReplyBody, MultipartRequest, MultipartRequestBody,
    OfpMessage, OxmField, PortNo, Version, message_length,
};
use switch_emulator::{Emulator, EmulatorConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const CHILD_FLAG: &str = "--emulator-child";

/// Flow `i` of switch `s`, shaped like flowgate's security-group flows:
/// conntrack state, an instance's zone register, addresses and ports.
fn flow(s: u32, i: u32) -> FlowMod {
    let instance = i / 20;
    let zone = (s * 64 + instance) as u16;
    let fields = vec![
        OxmField::EthType(0x0800),
        OxmField::Ipv4Src(Masked::exact(Ipv4Addr::from(
            0x0a00_0000 + (instance << 8) + (i % 250),
        ))),
        OxmField::IpProto(6),
        OxmField::TcpDst(Masked::exact(1000 + (i % 20) as u16)),
        OxmField::Reg {
            index: 6,
            value: Masked::exact(u32::from(zone)),
        },
        OxmField::CtState(Masked::new(
            ct_state::TRK | ct_state::NEW,
            ct_state::TRK | ct_state::NEW,
        )),
    ];
    let actions = vec![
        Action::Ct(Ct {
            flags: ct_flags::COMMIT,
            zone: CtZone::Immediate(zone),
            recirc_table: NX_CT_RECIRC_NONE,
            alg: 0,
            actions: vec![],
        }),
        Action::output(PortNo(1 + instance)),
    ];
    FlowMod {
        cookie: (u64::from(s) << 32) | u64::from(instance),
        ..FlowMod::add(
            (40 + i % 4) as u8,
            1000 + (i % 7) as u16,
            Match::new(fields),
            vec![Instruction::ApplyActions(actions)],
        )
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The emulator side: runs until its standard input closes.
fn child(port: u16, switches: usize) {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut config = EmulatorConfig::new(format!("tcp:127.0.0.1:{port}").parse().unwrap(), switches);
        config.ports_per_switch = 50;
        let emulator = Emulator::start(config).unwrap();
        tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
        })
        .await
        .unwrap();
        let counters = emulator.stop().await;
        println!("{counters}");
    });
}

struct Conn {
    stream: TcpStream,
    rbuf: Vec<u8>,
}

impl Conn {
    async fn accept(listener: &TcpListener) -> Conn {
        let (stream, _) = listener.accept().await.unwrap();
        stream.set_nodelay(true).unwrap();
        let mut c = Conn {
            stream,
            rbuf: Vec::new(),
        };
        let hello = OfpMessage::new(
            Version::OF13,
            1,
            Message::Hello(Hello::with_versions(&[Version::OF13])),
        );
        c.stream.write_all(&hello.to_bytes().unwrap()).await.unwrap();
        assert!(matches!(c.read().await.body, Message::Hello(_)));
        c
    }

    async fn read(&mut self) -> OfpMessage {
        loop {
            if let Some(len) = message_length(&self.rbuf).unwrap()
                && self.rbuf.len() >= len
            {
                let msg = OfpMessage::decode(&self.rbuf[..len]).unwrap();
                self.rbuf.drain(..len);
                if let Message::EchoRequest(d) = &msg.body {
                    let reply = OfpMessage::new(Version::OF13, msg.xid, Message::EchoReply(d.clone()));
                    self.stream.write_all(&reply.to_bytes().unwrap()).await.unwrap();
                    continue;
                }
                return msg;
            }
            assert!(
                self.stream.read_buf(&mut self.rbuf).await.unwrap() > 0,
                "emulator hung up"
            );
        }
    }

    /// Installs `flows` with one atomic bundle and waits for the barrier.
    async fn install(&mut self, flows: Vec<FlowMod>) {
        let v = Version::OF13;
        let flags = bundle_flags::ATOMIC;
        let mut out = Vec::with_capacity(flows.len() * 160);
        OfpMessage::new(
            v,
            1,
            Message::BundleControl(BundleControl::new(1, BundleCtrlType::OPEN_REQUEST, flags)),
        )
        .encode(&mut out)
        .unwrap();
        for (n, fm) in flows.into_iter().enumerate() {
            let xid = 10 + n as u32;
            let add = BundleAdd {
                bundle_id: 1,
                flags,
                message: Box::new(OfpMessage::new(v, xid, Message::FlowMod(fm))),
                properties: Vec::new(),
            };
            OfpMessage::new(v, xid, Message::BundleAdd(add))
                .encode(&mut out)
                .unwrap();
        }
        OfpMessage::new(
            v,
            2,
            Message::BundleControl(BundleControl::new(1, BundleCtrlType::COMMIT_REQUEST, flags)),
        )
        .encode(&mut out)
        .unwrap();
        OfpMessage::new(v, 3, Message::BarrierRequest)
            .encode(&mut out)
            .unwrap();
        self.stream.write_all(&out).await.unwrap();
        loop {
            let m = self.read().await;
            match m.body {
                Message::BarrierReply => return,
                Message::Error(e) => panic!("install failed: {}", e.display(v)),
                _ => {}
            }
        }
    }

    /// Reads every flow back; returns how many.
    async fn dump(&mut self) -> usize {
        let req = OfpMessage::new(
            Version::OF13,
            4,
            Message::MultipartRequest(MultipartRequest::new(MultipartRequestBody::Flow(
                FlowStatsRequest::all(),
            ))),
        );
        self.stream.write_all(&req.to_bytes().unwrap()).await.unwrap();
        let mut assembler = MultipartAssembler::new();
        loop {
            if let Message::MultipartReply(r) = self.read().await.body
                && let Some(MultipartReplyBody::Flow(flows)) = assembler.push(4, r)
            {
                return flows.len();
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(CHILD_FLAG) {
        child(args[2].parse().unwrap(), args[3].parse().unwrap());
        return;
    }
    if cfg!(debug_assertions) {
        eprintln!("scale: build with --release; debug numbers mean nothing");
        std::process::exit(2);
    }
    let switches: u32 = args.get(1).map_or(200, |s| s.parse().unwrap());
    let flows_per_switch: u32 = args.get(2).map_or(1000, |s| s.parse().unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        // A listen backlog larger than the 128 `TcpListener::bind` gives:
        // with 128, the 129th simultaneous SYN is dropped and its switch
        // retries a second later.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(1024).unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([CHILD_FLAG, &port.to_string(), &switches.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();

        let started = Instant::now();
        let mut conns = Vec::new();
        for _ in 0..switches {
            conns.push(Conn::accept(&listener).await);
        }
        let connect_time = started.elapsed();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let rss_idle = rss_kib(pid);

        // Install: every switch at once, as a controller's initial sync.
        let started = Instant::now();
        let tasks: Vec<_> = conns
            .into_iter()
            .enumerate()
            .map(|(s, mut c)| {
                tokio::spawn(async move {
                    let flows = (0..flows_per_switch).map(|i| flow(s as u32, i)).collect();
                    c.install(flows).await;
                    c
                })
            })
            .collect();
        let mut conns = Vec::new();
        for t in tasks {
            conns.push(t.await.unwrap());
        }
        let install_time = started.elapsed();
        let rss_full = rss_kib(pid);

        // Read back: every switch at once, as a reconciling controller.
        let started = Instant::now();
        let tasks: Vec<_> = conns
            .into_iter()
            .map(|mut c| {
                tokio::spawn(async move {
                    let n = c.dump().await;
                    (c, n)
                })
            })
            .collect();
        let mut total = 0;
        let mut conns = Vec::new();
        for t in tasks {
            let (c, n) = t.await.unwrap();
            total += n;
            conns.push(c);
        }
        let dump_time = started.elapsed();
        let rss_after_dump = rss_kib(pid);
        let expected = (switches * flows_per_switch) as usize;
        assert_eq!(total, expected, "every flow read back");

        drop(child.stdin.take());
        let mut counters = String::new();
        child.stdout.take().unwrap().read_to_string(&mut counters).unwrap();
        child.wait().unwrap();
        drop(conns);

        // The same flows held as the codec's typed values, for comparison.
        let me = std::process::id();
        let before = rss_kib(me);
        let typed: Vec<(Match, Vec<Instruction>)> = (0..switches)
            .flat_map(|s| (0..flows_per_switch).map(move |i| flow(s, i)))
            .map(|fm| (fm.match_, fm.instructions))
            .collect();
        let typed_kib = rss_kib(me).saturating_sub(before);
        let typed_count = typed.len();
        drop(typed);

        let flows = expected as f64;
        println!("switches={switches} flows_per_switch={flows_per_switch} total_flows={expected}");
        println!("connect_all={:.3}s", connect_time.as_secs_f64());
        println!(
            "install_via_bundles={:.3}s ({:.0} flows/s)",
            install_time.as_secs_f64(),
            flows / install_time.as_secs_f64()
        );
        println!(
            "read_back_flow_stats={:.3}s ({:.0} flows/s)",
            dump_time.as_secs_f64(),
            flows / dump_time.as_secs_f64()
        );
        println!(
            "emulator_rss_idle={:.1}MiB emulator_rss_with_flows={:.1}MiB after_read_back={:.1}MiB",
            mib(rss_idle),
            mib(rss_full),
            mib(rss_after_dump)
        );
        println!(
            "emulator_bytes_per_flow={:.0} (rss growth / flows); typed_values_bytes_per_flow={:.0} ({typed_count} flows)",
            (rss_full.saturating_sub(rss_idle) * 1024) as f64 / flows,
            (typed_kib * 1024) as f64 / typed_count as f64
        );
        println!("emulator_counters: {}", counters.trim());
    });
}
