//! Leader election among the flowgate nodes of one PostgreSQL store: at
//! most one node at a time is the leader (the switches' OpenFlow master),
//! and every election has an epoch larger than any before, which the new
//! leader claims its OpenFlow role with so that switches refuse a stale one.
//!
//! * **Leadership** is a session-level advisory lock held on a connection
//!   of the election's own. Followers try to take it every
//!   [`ElectionOptions::interval`]; whoever gets it bumps `leader.epoch`
//!   (migration 2) on the same connection and is leader for that epoch.
//! * **kill -9 of the leader**: its connection closes with the process,
//!   PostgreSQL ends the session and releases the lock; a follower takes it
//!   at its next try.
//! * **A frozen leader** (SIGSTOP, a paused VM) or **one cut off from the
//!   database**: the lock's session is opened with
//!   `idle_session_timeout` = [`ElectionOptions::server_timeout`], and the
//!   leader runs a query on it every interval, so PostgreSQL ends a silent
//!   leader's session, releasing the lock, after that long. The leader
//!   itself steps down as soon as a query fails or goes unanswered for
//!   [`ElectionOptions::lease`], which is shorter: one cut off from the
//!   database stops claiming to lead before anyone else can be elected. A
//!   frozen one cannot step down while frozen; when it thaws, the switches
//!   already know the new leader's larger epoch and refuse it until it
//!   notices (its next query fails) and follows.
//!
//! On SQLite there is one node and no election.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, Row};
use tokio::sync::watch;

use crate::StoreError;

/// The advisory lock the leader holds ("fg-lead" in ASCII); another key
/// than the migration lock's.
const LEADER_LOCK: i64 = 0x0066_672d_6c65_6164;

/// Timing of the election.
#[derive(Debug, Clone, Copy)]
pub struct ElectionOptions {
    /// How often a follower tries to become leader, and a leader proves
    /// to itself that it still is.
    pub interval: Duration,
    /// A leader whose proof the database has not answered within this long
    /// steps down (and anyone whose try it has not, gives up the try).
    pub lease: Duration,
    /// PostgreSQL ends the session (and so the leadership) of a node silent
    /// for this long. Must exceed `interval + lease`, so that a leader cut
    /// off from the database steps down before another can be elected.
    pub server_timeout: Duration,
}

impl Default for ElectionOptions {
    fn default() -> Self {
        ElectionOptions {
            interval: Duration::from_millis(250),
            lease: Duration::from_secs(3),
            server_timeout: Duration::from_secs(5),
        }
    }
}

/// What a node is, as far as it knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leadership {
    /// The database has not answered yet.
    Unknown,
    /// Another node leads (or none, between two leaders); `epoch` is the
    /// latest election's.
    Follower {
        /// The latest election's epoch.
        epoch: u64,
    },
    /// This node leads since the election of `epoch`.
    Leader {
        /// This election's epoch.
        epoch: u64,
    },
}

impl Leadership {
    /// The epoch known, 0 if none.
    pub fn epoch(self) -> u64 {
        match self {
            Leadership::Unknown => 0,
            Leadership::Follower { epoch } | Leadership::Leader { epoch } => epoch,
        }
    }
}

/// Writes this node's part in the election to `text`: whether it leads
/// (`flowgate_node_leader`, 0 or 1) and the latest election's epoch it
/// knows (`flowgate_election_epoch`, 0 until the database answers).
pub fn write_metrics(leadership: Leadership, text: &mut ::metrics::Text) {
    let leads = matches!(leadership, Leadership::Leader { .. });
    text.gauge(
        "flowgate_node_leader",
        "Whether this node leads (the switches' OpenFlow master, running the compute reconciler): 1 or 0.",
        u8::from(leads),
    );
    text.gauge(
        "flowgate_election_epoch",
        "The epoch of the latest election this node knows of (the generation id of the master's OpenFlow role).",
        leadership.epoch(),
    );
}

/// Starts taking part in the election on the PostgreSQL database at `url`
/// as `node` (a name for operators: `SELECT * FROM leader` shows who
/// leads). Runs on the current tokio runtime until every receiver of the
/// returned channel is dropped.
pub fn start(
    url: &str,
    node: &str,
    options: ElectionOptions,
) -> Result<watch::Receiver<Leadership>, StoreError> {
    // A leader's query is sent at most `interval` after the last answered
    // one and given up `lease` later: it has stepped down by then, before
    // the server can end its session and let another node in.
    if options.interval + options.lease >= options.server_timeout {
        return Err(StoreError::Election(format!(
            "need interval + lease < server timeout, got {options:?}"
        )));
    }
    let server_timeout = format!("{}ms", options.server_timeout.as_millis());
    let mut connect = PgConnectOptions::from_str(url)?.options([
        // A leader silent this long loses its session and its lock.
        ("idle_session_timeout", server_timeout.as_str()),
        // The epoch's bump is an autocommit statement: never left open.
        ("idle_in_transaction_session_timeout", server_timeout.as_str()),
    ]);
    if connect.get_application_name().is_none() {
        connect = connect.application_name("flowgate-election");
    }
    let (tx, rx) = watch::channel(Leadership::Unknown);
    let election = Election {
        connect,
        node: node.to_string(),
        options,
        conn: None,
        leading: None,
        failing: false,
    };
    tokio::spawn(election.run(tx));
    Ok(rx)
}

struct Election {
    connect: PgConnectOptions,
    node: String,
    options: ElectionOptions,
    conn: Option<PgConnection>,
    /// The epoch this node leads in, while it does.
    leading: Option<u64>,
    /// Whether the last round failed (logged once per outage).
    failing: bool,
}

impl Election {
    async fn run(mut self, tx: watch::Sender<Leadership>) {
        let mut tick = tokio::time::interval(self.options.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = tx.closed() => return,
            }
            let now = self.round().await;
            tx.send_if_modified(|known| {
                let changed = now.is_some_and(|now| now != *known);
                if let Some(now) = now {
                    *known = now;
                }
                changed
            });
        }
    }

    /// One try (follower) or proof (leader); `None` if nothing was learnt.
    async fn round(&mut self) -> Option<Leadership> {
        match tokio::time::timeout(self.options.lease, self.ask()).await {
            Ok(Ok(now)) => {
                if std::mem::replace(&mut self.failing, false) {
                    tracing::info!("the election's database answers again");
                }
                Some(now)
            }
            failed => {
                let reason = match failed {
                    Ok(Err(err)) => err.to_string(),
                    _ => format!("no answer within {:?}", self.options.lease),
                };
                // Closing the connection releases the lock if the server
                // still has the session; a new one is made next time.
                self.conn = None;
                let was_failing = std::mem::replace(&mut self.failing, true);
                match self.leading.take() {
                    Some(epoch) => {
                        tracing::warn!(epoch, %reason, "stepping down as leader: the database did not answer");
                        Some(Leadership::Follower { epoch })
                    }
                    None => {
                        if !was_failing {
                            tracing::warn!(%reason, "cannot take part in the election; retrying");
                        }
                        None
                    }
                }
            }
        }
    }

    async fn ask(&mut self) -> Result<Leadership, StoreError> {
        if self.conn.is_none() {
            self.conn = Some(crate::db::connect_postgres(&self.connect).await?);
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(StoreError::Closed);
        };
        if let Some(epoch) = self.leading {
            // The lock belongs to this session: an answer on it proves it
            // is still held (and resets the server's idle timeout). The
            // epoch cannot have moved under it.
            let row = sqlx::query("SELECT epoch FROM leader WHERE id = 1")
                .fetch_one(&mut *conn)
                .await?;
            let current = to_u64(row.try_get(0)?);
            if current != epoch {
                tracing::error!(
                    epoch,
                    current,
                    "the epoch moved while this node held the lock; stepping down"
                );
                self.conn = None;
                self.leading = None;
                return Ok(Leadership::Follower { epoch: current });
            }
            return Ok(Leadership::Leader { epoch });
        }
        let row = sqlx::query("SELECT pg_try_advisory_lock($1), epoch FROM leader WHERE id = 1")
            .bind(LEADER_LOCK)
            .fetch_one(&mut *conn)
            .await?;
        let won: bool = row.try_get(0)?;
        let epoch = to_u64(row.try_get(1)?);
        if !won {
            return Ok(Leadership::Follower { epoch });
        }
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        let row = sqlx::query(
            // At least the wall clock in ms: switches remember the largest
            // generation id they saw until they restart, so an epoch that
            // went back (a new database, a restore from an older backup)
            // would be refused as stale; the clock keeps it ahead of those.
            "UPDATE leader SET epoch = GREATEST(epoch + 1, $2), node = $1, elected_ms = $2 WHERE id = 1 RETURNING epoch",
        )
        .bind(&self.node)
        .bind(now_ms)
        .fetch_one(&mut *conn)
        .await?;
        let epoch = to_u64(row.try_get(0)?);
        tracing::info!(epoch, node = %self.node, "elected leader");
        self.leading = Some(epoch);
        Ok(Leadership::Leader { epoch })
    }
}

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// Who leads, as the database says: (epoch, node, elected at in ms since
/// the Unix epoch). For operators and tests.
pub async fn current(url: &str) -> Result<(u64, String, u64), StoreError> {
    let options = PgConnectOptions::from_str(url)?;
    let mut conn = PgConnection::connect_with(&options).await?;
    let row = sqlx::query("SELECT epoch, node, elected_ms FROM leader WHERE id = 1")
        .fetch_one(&mut conn)
        .await?;
    let epoch = to_u64(row.try_get(0)?);
    let node: String = row.try_get(1)?;
    let elected = to_u64(row.try_get(2)?);
    let _ = conn.close().await;
    Ok((epoch, node, elected))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(leadership: Leadership) -> String {
        let mut text = ::metrics::Text::new();
        write_metrics(leadership, &mut text);
        text.finish()
    }

    #[test]
    fn metrics_say_whether_this_node_leads_and_the_epoch() {
        let leader = rendered(Leadership::Leader { epoch: 7 });
        assert!(leader.contains("\nflowgate_node_leader 1\n"), "{leader}");
        assert!(leader.contains("\nflowgate_election_epoch 7\n"), "{leader}");
        let follower = rendered(Leadership::Follower { epoch: 8 });
        assert!(follower.contains("\nflowgate_node_leader 0\n"), "{follower}");
        assert!(follower.contains("\nflowgate_election_epoch 8\n"), "{follower}");
        let unknown = rendered(Leadership::Unknown);
        assert!(unknown.contains("\nflowgate_node_leader 0\n"), "{unknown}");
        assert!(unknown.contains("\nflowgate_election_epoch 0\n"), "{unknown}");
    }
}
