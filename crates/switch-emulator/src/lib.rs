//! Emulated OpenFlow switches for testing and benchmarking flowgate's
//! controller: hundreds or thousands of switches in one process, each
//! holding its flow table in memory, connecting actively to a controller
//! the way an Open vSwitch bridge does, and answering like Open vSwitch 3.x
//! (flow-mods, bundles, statistics, barriers, roles, echo) without a
//! datapath: no packet ever passes through them.
//!
//! # Layout
//!
//! * [`session`]: the OpenFlow protocol of one connection as a pure state
//!   machine (message in, messages out, table changed), testable without
//!   sockets.
//! * [`table`], [`matching`], [`compact`], [`validate`]: the flow table,
//!   stored compactly, with Open vSwitch's flow-mod semantics.
//! * [`datapath`], [`ports`], [`counters`], [`faults`]: what one switch
//!   is, shows and counts, and how it can be told to misbehave.
//! * `runtime`: the tokio tasks that move bytes and reconnect.
//! * [`emulator`] and [`config`]: the API to start, observe and steer a
//!   set of switches.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use switch_emulator::{Emulator, EmulatorConfig};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = EmulatorConfig::new("tcp:127.0.0.1:6653".parse()?, 50);
//! let emulator = Emulator::start(config)?;
//! emulator.wait_connected(50, Duration::from_secs(10)).await?;
//! let first = emulator.switch(emulator.datapath_ids()[0]).expect("first switch");
//! println!("{} flows, {}", first.flow_count(), emulator.counters());
//! let totals = emulator.stop().await;
//! # let _ = totals;
//! # Ok(())
//! # }
//! ```

pub mod compact;
pub mod config;
pub mod counters;
pub mod datapath;
pub mod emulator;
pub mod faults;
pub mod matching;
pub mod ports;
mod runtime;
pub mod session;
pub mod table;
pub mod validate;

pub use config::{Backoff, ConfigError, DEFAULT_DATAPATH_ID_BASE, EmulatorConfig, Target, TargetParseError};
pub use counters::{Counters, FlowModCounts};
pub use datapath::{ConnId, Datapath, SwitchSpec};
pub use emulator::{Emulator, EmulatorHandle, StartError, SwitchView, Timeout};
pub use faults::{CookieRejection, Faults};
pub use session::{CloseReason, Output, Session, SessionConfig};
