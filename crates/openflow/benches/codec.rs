//! Codec throughput benchmark: how many typical messages per second one
//! core encodes and decodes, against a floor of merely touching the same
//! bytes.
//!
//! ```text
//! cargo bench -p openflow --bench codec                  # full run
//! cargo bench -p openflow --bench codec -- packet-in     # workloads whose name contains "packet-in"
//! cargo bench -p openflow --bench codec -- --rounds 5 --round-ms 50
//! ```
//!
//! Plain `std::time::Instant` and `std::hint::black_box`, no criterion, to
//! keep the dependency tree lean. Each workload runs over a fixed stream of
//! realistic messages (see [`flow_mods`], [`packet_ins`], [`packet_outs`]):
//! a warm-up calibrates how many passes fill a round, then several timed
//! rounds run and the median rate is reported.
//!
//! The floor ("header-only framing") frames the same wire stream with
//! [`message_length`], copies each message into a buffer and parses only its
//! 8-byte header: the least any codec must do to hand a message on. Our
//! throughput is printed as a fraction of that floor.
//!
//! Results are recorded in `docs/benchmarks.md`.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use openflow::action::{Ct, CtZone, NX_CT_RECIRC_NONE, ct_flags};
use openflow::packet::packet_in_reason;
use openflow::{
    Action, FieldId, FlowMod, Header, Instruction, MacAddr, Masked, Match, Message, OFP_NO_BUFFER,
    OfpMessage, OxmField, PacketIn, PacketOut, PortNo, Subfield, Version, message_length,
};

/// Messages in each workload's stream: enough variety to defeat branch
/// predictors learning one message, small enough (~150 KiB of wire bytes)
/// to stay in L2 like a controller's socket buffer.
const STREAM_LEN: usize = 1024;

/// The issue's targets, in messages per second on one core.
const TARGET_ENCODE_FLOW_MOD: f64 = 2_000_000.0;
const TARGET_DECODE_PACKET_IN: f64 = 2_000_000.0;

fn main() {
    let config = Config::from_args();
    let workloads = [
        Workload::new("encode flow-mod", Direction::Encode, flow_mods()),
        Workload::new("decode flow-mod", Direction::Decode, flow_mods()),
        Workload::new(
            "decode packet-in (60 B ARP)",
            Direction::Decode,
            packet_ins(&arp_frame()),
        ),
        Workload::new(
            "decode packet-in (128 B IPv4/TCP)",
            Direction::Decode,
            packet_ins(&tcp_frame()),
        ),
        Workload::new(
            "encode packet-out (60 B ARP)",
            Direction::Encode,
            packet_outs(&arp_frame()),
        ),
        Workload::new(
            "encode packet-out (128 B IPv4/TCP)",
            Direction::Encode,
            packet_outs(&tcp_frame()),
        ),
    ];

    println!(
        "openflow codec throughput: {STREAM_LEN}-message streams, {} rounds of ~{} ms, median, one thread",
        config.rounds,
        config.round_time.as_millis()
    );
    println!();
    println!(
        "| workload | bytes/msg | M msg/s | MB/s | spread (min-max M msg/s) | floor M msg/s | vs floor |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut verdicts = Vec::new();
    for w in &workloads {
        if !config.selects(w.name) {
            continue;
        }
        let ours = w.measure(&config);
        let floor = w.measure_floor(&config);
        println!(
            "| {} | {:.0} | {:.2} | {:.0} | {:.2}-{:.2} | {:.1} | {:.3}x |",
            w.name,
            w.bytes_per_msg(),
            ours.median / 1e6,
            ours.median * w.bytes_per_msg() / 1e6,
            ours.min / 1e6,
            ours.max / 1e6,
            floor.median / 1e6,
            ours.median / floor.median,
        );
        verdicts.push((w, ours, floor));
    }

    println!();
    for (w, ours, floor) in &verdicts {
        println!(
            "{}: {:.2} M msg/s, {:.0} MB/s, {:.3}x of header-only framing",
            w.name,
            ours.median / 1e6,
            ours.median * w.bytes_per_msg() / 1e6,
            ours.median / floor.median
        );
    }
    println!();
    for (w, ours, _) in &verdicts {
        let target = match w.name {
            n if n.starts_with("encode flow-mod") => TARGET_ENCODE_FLOW_MOD,
            n if n.starts_with("decode packet-in") => TARGET_DECODE_PACKET_IN,
            _ => continue,
        };
        let verdict = if ours.median >= target { "PASS" } else { "MISS" };
        println!(
            "{verdict}: {} {:.2} M msg/s (target >= {:.1} M msg/s)",
            w.name,
            ours.median / 1e6,
            target / 1e6
        );
    }
}

/// Command-line knobs; `cargo bench` itself passes `--bench`, ignored here.
struct Config {
    rounds: usize,
    round_time: Duration,
    filter: Option<String>,
}

impl Config {
    fn from_args() -> Config {
        let mut config = Config {
            rounds: 15,
            round_time: Duration::from_millis(100),
            filter: None,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--bench" => {}
                "--rounds" => {
                    config.rounds = args
                        .next()
                        .and_then(|v| v.parse().ok())
                        .filter(|&n| n > 0)
                        .expect("--rounds takes a positive number");
                }
                "--round-ms" => {
                    let ms = args
                        .next()
                        .and_then(|v| v.parse().ok())
                        .filter(|&n| n > 0)
                        .expect("--round-ms takes a positive number of milliseconds");
                    config.round_time = Duration::from_millis(ms);
                }
                other if other.starts_with('-') => panic!("unknown option {other}"),
                filter => config.filter = Some(filter.to_owned()),
            }
        }
        config
    }

    fn selects(&self, name: &str) -> bool {
        self.filter.as_deref().is_none_or(|f| name.contains(f))
    }
}

/// Median, minimum and maximum rate over the timed rounds, in messages per
/// second.
struct Rate {
    median: f64,
    min: f64,
    max: f64,
}

enum Direction {
    Encode,
    Decode,
}

/// One message stream and what to do with it.
struct Workload {
    name: &'static str,
    direction: Direction,
    messages: Vec<OfpMessage>,
    /// The stream as it travels on the wire.
    wire: Vec<u8>,
}

impl Workload {
    fn new(name: &'static str, direction: Direction, messages: Vec<OfpMessage>) -> Workload {
        let mut wire = Vec::new();
        for m in &messages {
            m.encode(&mut wire).expect("benchmark messages encode");
        }
        // A benchmark of a codec that does not round-trip would measure the
        // wrong thing: check once, outside the timed loops.
        let decoded = frames(&wire)
            .map(|frame| OfpMessage::decode(frame).expect("benchmark messages decode"))
            .collect::<Vec<_>>();
        assert!(decoded == messages, "{name}: stream does not round-trip");
        Workload {
            name,
            direction,
            messages,
            wire,
        }
    }

    fn bytes_per_msg(&self) -> f64 {
        self.wire.len() as f64 / self.messages.len() as f64
    }

    fn measure(&self, config: &Config) -> Rate {
        match self.direction {
            Direction::Encode => {
                // One reused buffer, as a controller reuses its send buffer:
                // after the first pass no pass allocates for output.
                let mut out = Vec::with_capacity(self.wire.len());
                run(config, self.messages.len(), || {
                    out.clear();
                    for m in &self.messages {
                        m.encode(&mut out).expect("benchmark messages encode");
                    }
                    black_box(&out);
                })
            }
            Direction::Decode => run(config, self.messages.len(), || {
                for frame in frames(black_box(&self.wire)) {
                    // Dropping the decoded value is part of the cost, as it
                    // is in a controller.
                    black_box(OfpMessage::decode(frame).expect("benchmark messages decode"));
                }
            }),
        }
    }

    /// The floor: frame, copy and parse the header of each message of the
    /// same wire stream.
    fn measure_floor(&self, config: &Config) -> Rate {
        let mut buf = Vec::with_capacity(usize::from(u16::MAX));
        run(config, self.messages.len(), || {
            for frame in frames(black_box(&self.wire)) {
                buf.clear();
                buf.extend_from_slice(frame);
                black_box(Header::parse(black_box(&buf)).expect("benchmark headers parse"));
            }
        })
    }
}

/// The messages of a well-formed stream, framed as a controller frames its
/// socket buffer.
fn frames(mut wire: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let len = message_length(wire).expect("benchmark stream frames")?;
        let (frame, rest) = wire.split_at(len);
        wire = rest;
        Some(frame)
    })
}

/// Warms up, calibrates passes per round to `config.round_time`, runs the
/// timed rounds and returns the rates in messages per second.
fn run(config: &Config, msgs_per_pass: usize, mut pass: impl FnMut()) -> Rate {
    // Warm-up: caches, branch predictors, allocator free lists, CPU clock.
    let warm_up = config.round_time * 3;
    let start = Instant::now();
    let mut passes = 0u32;
    while start.elapsed() < warm_up {
        pass();
        passes += 1;
    }
    let per_pass = start.elapsed() / passes;
    let passes_per_round = (config.round_time.as_nanos() / per_pass.as_nanos().max(1)).max(1);

    let mut rates = Vec::with_capacity(config.rounds);
    for _ in 0..config.rounds {
        let start = Instant::now();
        for _ in 0..passes_per_round {
            pass();
        }
        let elapsed = start.elapsed().as_secs_f64();
        rates.push(passes_per_round as f64 * msgs_per_pass as f64 / elapsed);
    }
    rates.sort_by(f64::total_cmp);
    Rate {
        median: rates[rates.len() / 2],
        min: rates[0],
        max: rates[rates.len() - 1],
    }
}

/// A realistic mix of flowgate's flow-mods, 120 to 168 bytes each, cycling
/// through three shapes with varying values:
///
/// * security-group allow with conntrack: 6 match fields,
///   `ct(commit,zone=reg0[0..15],exec(set_field:ct_mark)),resubmit(,N)`;
/// * one clause of a conjunctive match: 5 fields, `conjunction(id,k/2)`;
/// * Elastic IP rewrite: 4 fields,
///   `set_field:eth_dst,set_field:ipv4_dst,output:3`.
fn flow_mods() -> Vec<OfpMessage> {
    (0..STREAM_LEN)
        .map(|i| {
            let n = i as u32;
            let port = PortNo(n % 48 + 1);
            let net = Ipv4Addr::from(0x0a00_0000 | (n << 8));
            let mut flow = match i % 3 {
                0 => FlowMod::add(
                    20,
                    1000 + (i % 100) as u16,
                    Match::new(vec![
                        OxmField::InPort(port),
                        OxmField::EthType(0x0800),
                        OxmField::Ipv4Src(Masked::new(net, Ipv4Addr::new(255, 255, 255, 0))),
                        OxmField::IpProto(6),
                        OxmField::TcpDst(Masked::new(0x1f90 + (n as u16 & 0xf), 0xfff0)),
                        OxmField::Reg {
                            index: 0,
                            value: Masked::exact(n % 4096),
                        },
                    ]),
                    vec![Instruction::ApplyActions(vec![
                        Action::Ct(Ct {
                            flags: ct_flags::COMMIT,
                            zone: CtZone::Field(Subfield::bits(FieldId::Reg(0), 0, 16)),
                            recirc_table: NX_CT_RECIRC_NONE,
                            alg: 0,
                            actions: vec![Action::SetField(OxmField::CtMark(Masked::exact(n)))],
                        }),
                        Action::resubmit_table(30 + (i % 4) as u8),
                    ])],
                ),
                1 => FlowMod::add(
                    40,
                    2000,
                    Match::new(vec![
                        OxmField::EthType(0x0800),
                        OxmField::Ipv4Src(Masked::new(net, Ipv4Addr::new(255, 255, 0, 0))),
                        OxmField::IpProto(17),
                        OxmField::UdpDst(Masked::new(0x0035, 0xffff)),
                        OxmField::Reg {
                            index: 1,
                            value: Masked::exact(n),
                        },
                    ]),
                    vec![Instruction::ApplyActions(vec![Action::Conjunction {
                        id: 0x1000 + n,
                        clause: (i % 2) as u8,
                        n_clauses: 2,
                    }])],
                ),
                _ => FlowMod::add(
                    10,
                    500,
                    Match::new(vec![
                        OxmField::InPort(port),
                        OxmField::EthType(0x0800),
                        OxmField::Ipv4Dst(Masked::exact(Ipv4Addr::from(0xcb00_7100 | (n & 0xff)))),
                        OxmField::Reg {
                            index: 0,
                            value: Masked::exact(n % 4096),
                        },
                    ]),
                    vec![Instruction::ApplyActions(vec![
                        Action::SetField(OxmField::EthDst(Masked::exact(MacAddr::from_u64(
                            0x02fa_0000_0000 | u64::from(n),
                        )))),
                        Action::SetField(OxmField::Ipv4Dst(Masked::exact(net))),
                        Action::output(PortNo(3)),
                    ])],
                ),
            };
            flow.cookie = 0x0100_0000_0000_0000 | u64::from(n);
            OfpMessage::new(Version::OF13, n, Message::FlowMod(flow))
        })
        .collect()
}

/// OpenFlow 1.3 packet-ins as Open vSwitch sends them for a
/// `controller` action: a match with `in_port` and `reg0`, and the frame.
fn packet_ins(frame: &[u8]) -> Vec<OfpMessage> {
    (0..STREAM_LEN)
        .map(|i| {
            let n = i as u32;
            let packet_in = PacketIn {
                buffer_id: OFP_NO_BUFFER,
                total_len: frame.len() as u16,
                reason: packet_in_reason::ACTION,
                table_id: 0,
                cookie: 0x0300_0000_0000_0000 | u64::from(n),
                match_: Match::new(vec![
                    OxmField::InPort(PortNo(n % 48 + 1)),
                    OxmField::Reg {
                        index: 0,
                        value: Masked::exact(n % 4096),
                    },
                ]),
                data: frame.to_vec(),
            };
            OfpMessage::new(Version::OF13, 0, Message::PacketIn(packet_in))
        })
        .collect()
}

/// Packet-outs as flowgate sends them: an ARP reply straight out of a port,
/// or a frame resubmitted to the pipeline with `output:TABLE`.
fn packet_outs(frame: &[u8]) -> Vec<OfpMessage> {
    (0..STREAM_LEN)
        .map(|i| {
            let n = i as u32;
            let (in_port, actions) = if frame.len() <= 60 {
                (PortNo::CONTROLLER, vec![Action::output(PortNo(n % 48 + 1))])
            } else {
                (PortNo(n % 48 + 1), vec![Action::output(PortNo::TABLE)])
            };
            let packet_out = PacketOut {
                buffer_id: OFP_NO_BUFFER,
                in_port,
                actions,
                data: frame.to_vec(),
            };
            OfpMessage::new(Version::OF13, n, Message::PacketOut(packet_out))
        })
        .collect()
}

/// A minimum-size Ethernet frame: ARP request who-has 10.0.1.1 tell
/// 10.0.1.17, padded to 60 bytes.
fn arp_frame() -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&[0x02, 0xfa, 0, 0, 0, 0x11]);
    f.extend_from_slice(&[0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01]);
    f.extend_from_slice(&[0x02, 0xfa, 0, 0, 0, 0x11, 10, 0, 1, 17]);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&[10, 0, 1, 1]);
    f.resize(60, 0);
    f
}

/// A 128-byte IPv4/TCP frame: Ethernet, a 20-byte IPv4 header, a 20-byte
/// TCP header (PSH/ACK to port 80) and 74 bytes of payload.
fn tcp_frame() -> Vec<u8> {
    let mut f = Vec::with_capacity(128);
    f.extend_from_slice(&[0x02, 0xfa, 0, 0, 0, 0x01, 0x02, 0xfa, 0, 0, 0, 0x11, 0x08, 0x00]);
    let ip_len: u16 = 128 - 14;
    f.extend_from_slice(&[0x45, 0x00]);
    f.extend_from_slice(&ip_len.to_be_bytes());
    f.extend_from_slice(&[
        0x1c, 0x46, 0x40, 0x00, 64, 6, 0x00, 0x00, 10, 0, 1, 17, 203, 0, 113, 5,
    ]);
    f.extend_from_slice(&[
        0xc3, 0x50, 0x00, 0x50, 0, 0, 0x10, 0, 0, 0, 0x20, 0, 0x50, 0x18, 0xfa, 0xf0,
    ]);
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend(
        b"GET / HTTP/1.1\r\nHost: 203.0.113.5\r\n"
            .iter()
            .copied()
            .cycle()
            .take(128 - 54),
    );
    f
}
