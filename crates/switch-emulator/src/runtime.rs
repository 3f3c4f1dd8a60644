//! The I/O side: this module's one job is moving bytes between sockets and
//! the pure [`Session`] state machine, keeping time, and reconnecting.
//!
//! One tokio task per (switch, controller) pair connects actively to the
//! target, frames the byte stream with [`openflow::message_length`], hands
//! each message to the session under the switch's lock, and carries out
//! the outputs in order: writes, stalls, broadcasts to the switch's other
//! connections, closes. When the connection ends it waits for the backoff
//! and connects again; the switch's flow table lives on in its
//! [`Datapath`].

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use openflow::{DecodeError, Message, message_length};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::config::{Backoff, Target};
use crate::datapath::Datapath;
use crate::session::{CloseReason, Output, Session, SessionConfig};

/// Housekeeping (bundle and flow expiry) runs at least this often.
const HOUSEKEEPING: Duration = Duration::from_secs(1);
/// Read buffers shrink back to this after a large message.
const READ_BUFFER: usize = 8 * 1024;

/// State shared by every task of one emulator.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Zero of the emulator's clock.
    pub epoch: Instant,
    /// Becomes `true` when the emulator stops.
    pub stop: watch::Sender<bool>,
    /// Switches with at least one negotiated connection.
    pub connected: watch::Sender<usize>,
    /// Source of connection ids.
    pub next_conn: AtomicU64,
    /// Protocol settings of every connection.
    pub session: SessionConfig,
    /// Reconnection backoff.
    pub backoff: Backoff,
}

impl Shared {
    pub fn now(&self) -> Duration {
        self.epoch.elapsed()
    }
}

/// What the library API can ask of one switch's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Control {
    /// Whether the switch should be connected at all.
    pub online: bool,
    /// Incremented to make every connection drop (and reconnect).
    pub kicks: u64,
}

/// One switch: its lasting state and the channels to its tasks.
#[derive(Debug)]
pub(crate) struct SwitchShared {
    pub dp: Mutex<Datapath>,
    pub control: watch::Sender<Control>,
    /// Asynchronous messages for every connection of the switch.
    pub events: broadcast::Sender<Message>,
}

impl SwitchShared {
    /// The switch's state; a panic elsewhere while it was held leaves the
    /// state usable (every change is a complete step), so poisoning is
    /// ignored.
    pub fn lock(&self) -> MutexGuard<'_, Datapath> {
        self.dp.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Why a connection ended, for logs.
#[derive(Debug, thiserror::Error)]
enum End {
    #[error("{0}")]
    Session(CloseReason),
    #[error("unframeable input: {0}")]
    Framing(DecodeError),
    #[error("controller closed the connection")]
    PeerClosed,
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("emulator stopping")]
    Stopped,
    #[error("asked to disconnect")]
    Kicked,
}

/// A small per-switch pseudo-random sequence for backoff jitter (no need
/// for a random crate: it only has to differ between switches).
struct Jitter(u64);

impl Jitter {
    fn next_percent(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % 26
    }
}

/// Runs one switch's connection to `target` until the emulator stops.
pub(crate) async fn run(shared: Arc<Shared>, sw: Arc<SwitchShared>, target: Target, first_delay: Duration) {
    let dpid = sw.lock().datapath_id();
    let mut stop = shared.stop.subscribe();
    let mut control = sw.control.subscribe();
    let mut jitter = Jitter(dpid | 1);
    let mut backoff = shared.backoff.initial;
    if !first_delay.is_zero() && sleep_or_stop(first_delay, &mut stop).await {
        return;
    }
    loop {
        // Stay down while the switch is offline.
        if wait_online(&mut control, &mut stop).await {
            return;
        }
        let kicks = control.borrow_and_update().kicks;
        let connected = tokio::select! {
            _ = stopped(&mut stop) => return,
            c = connect(&target) => c,
        };
        let mut negotiated = false;
        match connected {
            Ok(Stream::Tcp(s)) => {
                // Barrier replies are latency-sensitive: no Nagle delay.
                let _ = s.set_nodelay(true);
                negotiated = serve(&shared, &sw, s, &mut stop, &mut control, kicks, dpid).await;
            }
            Ok(Stream::Unix(s)) => {
                negotiated = serve(&shared, &sw, s, &mut stop, &mut control, kicks, dpid).await;
            }
            Err(e) => debug!(dpid = %format_args!("{dpid:016x}"), %target, error = %e, "connect failed"),
        }
        if *stop.borrow() {
            return;
        }
        if negotiated {
            backoff = shared.backoff.initial;
        }
        let wait = backoff + backoff * jitter.next_percent() as u32 / 100;
        if sleep_or_stop(wait, &mut stop).await {
            return;
        }
        if !negotiated {
            backoff = (backoff * 2).min(shared.backoff.max);
        }
    }
}

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

async fn connect(target: &Target) -> io::Result<Stream> {
    Ok(match target {
        Target::Tcp(addr) => Stream::Tcp(TcpStream::connect(addr.as_str()).await?),
        Target::Unix(path) => Stream::Unix(UnixStream::connect(path).await?),
    })
}

/// Resolves when the emulator stops (the watch guard stays inside, so the
/// future is `Send`).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Sleeps; returns `true` if the emulator stopped meanwhile.
async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    let stopped = tokio::select! {
        _ = stopped(stop) => true,
        _ = tokio::time::sleep(d) => false,
    };
    stopped || *stop.borrow()
}

/// Waits until the switch is online; returns `true` if the emulator
/// stopped meanwhile.
async fn wait_online(control: &mut watch::Receiver<Control>, stop: &mut watch::Receiver<bool>) -> bool {
    let online = async { control.wait_for(|c| c.online).await.is_ok() };
    let stopped = tokio::select! {
        _ = stopped(stop) => true,
        online = online => !online,
    };
    stopped || *stop.borrow()
}

/// One connection: returns whether version negotiation succeeded.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &Shared,
    sw: &SwitchShared,
    mut stream: S,
    stop: &mut watch::Receiver<bool>,
    control: &mut watch::Receiver<Control>,
    kicks: u64,
    dpid: u64,
) -> bool {
    let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let mut conn = Connection {
        session: Session::new(id, shared.session.clone(), shared.now()),
        rbuf: Vec::with_capacity(READ_BUFFER),
        wbuf: Vec::with_capacity(READ_BUFFER),
        negotiated: false,
    };
    let mut events = sw.events.subscribe();
    let end = conn
        .run(shared, sw, &mut stream, stop, control, &mut events, kicks)
        .await;
    {
        let mut dp = sw.lock();
        let had = dp.connections() > 0;
        conn.session.close(&mut dp);
        if had && dp.connections() == 0 {
            shared.connected.send_modify(|c| *c = c.saturating_sub(1));
        }
    }
    // Say goodbye properly; the peer may already be gone.
    let _ = stream.shutdown().await;
    debug!(dpid = %format_args!("{dpid:016x}"), conn = id, reason = %end, "disconnected");
    if matches!(end, End::Framing(_)) {
        warn!(dpid = %format_args!("{dpid:016x}"), reason = %end, "dropping the connection");
    }
    conn.negotiated
}

struct Connection {
    session: Session,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    negotiated: bool,
}

impl Connection {
    #[allow(clippy::too_many_arguments)]
    async fn run<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        shared: &Shared,
        sw: &SwitchShared,
        stream: &mut S,
        stop: &mut watch::Receiver<bool>,
        control: &mut watch::Receiver<Control>,
        events: &mut broadcast::Receiver<Message>,
        kicks: u64,
    ) -> End {
        let mut out = Vec::new();
        {
            let mut dp = sw.lock();
            self.session.start(&mut dp, &mut out);
        }
        if let Err(end) = self.execute(shared, sw, stream, out).await {
            return end;
        }
        loop {
            // Everything already received is handled before reading more.
            match self.process(shared, sw) {
                Ok(out) if !out.is_empty() => {
                    if let Err(end) = self.execute(shared, sw, stream, out).await {
                        return end;
                    }
                    continue;
                }
                Ok(_) => {}
                Err(end) => return end,
            }
            let now = shared.now();
            let due = self
                .session
                .next_deadline()
                .map_or(now + HOUSEKEEPING, |d| d.min(now + HOUSEKEEPING));
            let wake = shared.epoch + due;
            if self.rbuf.is_empty() && self.rbuf.capacity() > 8 * READ_BUFFER {
                self.rbuf.shrink_to(READ_BUFFER);
            }
            self.rbuf.reserve(READ_BUFFER);
            tokio::select! {
                biased;
                _ = stopped(stop) => return End::Stopped,
                _ = async { control.wait_for(|c| !c.online || c.kicks != kicks).await.is_ok() } => {
                    return End::Kicked;
                }
                event = events.recv() => {
                    // A lagging receiver misses a few announcements rather
                    // than blocking the switch.
                    if let Ok(body) = event {
                        let msg = {
                            let mut dp = sw.lock();
                            self.session.async_message(&mut dp, &body)
                        };
                        if let Some(msg) = msg
                            && let Err(end) = self.execute(shared, sw, stream, vec![Output::Send(msg)]).await
                        {
                            return end;
                        }
                    }
                }
                read = stream.read_buf(&mut self.rbuf) => match read {
                    Ok(0) => return End::PeerClosed,
                    Ok(_) => {}
                    Err(e) => return End::Io(e),
                },
                _ = tokio::time::sleep_until(wake) => {
                    let mut out = Vec::new();
                    {
                        let mut dp = sw.lock();
                        self.session.tick(&mut dp, shared.now(), &mut out);
                    }
                    if let Err(end) = self.execute(shared, sw, stream, out).await {
                        return end;
                    }
                }
            }
        }
    }

    /// Hands complete messages to the session until one asks to stall or
    /// close (so that later messages wait for it), all under one lock.
    fn process(&mut self, shared: &Shared, sw: &SwitchShared) -> Result<Vec<Output>, End> {
        let mut out = Vec::new();
        let mut pos = 0;
        let mut dp = sw.lock();
        let now = shared.now();
        let result = loop {
            let rest = self.rbuf.get(pos..).unwrap_or(&[]);
            let len = match message_length(rest) {
                Err(e) => break Err(End::Framing(e)),
                Ok(Some(len)) if len <= rest.len() => len,
                Ok(_) => break Ok(()),
            };
            let was_negotiated = self.session.version().is_some();
            self.session.handle(&mut dp, &rest[..len], now, &mut out);
            pos += len;
            if !was_negotiated && self.session.version().is_some() {
                self.negotiated = true;
                if dp.connections() == 1 {
                    shared.connected.send_modify(|c| *c += 1);
                }
            }
            if out
                .iter()
                .any(|o| matches!(o, Output::Delay(_) | Output::Close(_)))
            {
                break Ok(());
            }
        };
        drop(dp);
        self.rbuf.drain(..pos);
        result.map(|()| out)
    }

    /// Carries out outputs in order.
    async fn execute<S: AsyncWrite + Unpin>(
        &mut self,
        _shared: &Shared,
        sw: &SwitchShared,
        stream: &mut S,
        out: Vec<Output>,
    ) -> Result<(), End> {
        for output in out {
            match output {
                Output::Send(msg) => {
                    let start = self.wbuf.len();
                    if let Err(e) = msg.encode(&mut self.wbuf) {
                        self.wbuf.truncate(start);
                        warn!(message = msg.body.name(), error = %e, "cannot encode a reply; skipped");
                    }
                }
                Output::Broadcast(body) => {
                    // No receiver means no connection to tell.
                    let _ = sw.events.send(body);
                }
                Output::Delay(d) => {
                    self.flush(stream).await?;
                    tokio::time::sleep(d).await;
                }
                Output::Close(reason) => {
                    self.flush(stream).await?;
                    return Err(End::Session(reason));
                }
            }
        }
        self.flush(stream).await
    }

    async fn flush<S: AsyncWrite + Unpin>(&mut self, stream: &mut S) -> Result<(), End> {
        if !self.wbuf.is_empty() {
            stream.write_all(&self.wbuf).await?;
            self.wbuf.clear();
            if self.wbuf.capacity() > 8 * READ_BUFFER {
                self.wbuf.shrink_to(READ_BUFFER);
            }
        }
        Ok(())
    }
}
