//! What the store counts for `/metrics`: write transactions and their
//! duration, mutations by outcome, changes brought in from other processes
//! and nodes, and the revision.

use ::metrics::{Counter, Histogram, Kind, Text};

/// The store's counters, kept by its writer and listener.
#[derive(Debug, Default)]
pub(crate) struct StoreMetrics {
    /// Transactions committed that wrote changes.
    pub(crate) transactions: Counter,
    /// Transactions that failed, nothing of them kept.
    pub(crate) transactions_failed: Counter,
    /// Time from beginning a transaction that wrote to its durable commit.
    pub(crate) commit_duration: Histogram,
    /// Mutations committed (their transaction's commit is durable).
    pub(crate) mutations_committed: Counter,
    /// Mutations the operation refused; nothing of them was written.
    pub(crate) mutations_rejected: Counter,
    /// Mutations accepted whose transaction then failed.
    pub(crate) mutations_failed: Counter,
    /// Changes of objects committed by other processes or nodes, applied
    /// to this store's model.
    pub(crate) external_changes: Counter,
    /// Times the PostgreSQL listener lost its connection (notifications
    /// may have been missed; the writer then looks for itself).
    pub(crate) listener_lost: Counter,
}

impl StoreMetrics {
    /// Writes every metric; `revision` is the committed one, `postgres`
    /// whether the listener's figures mean anything.
    pub(crate) fn write(&self, text: &mut Text, revision: u64, postgres: bool) {
        text.counter(
            "flowgate_store_transactions_total",
            "Store transactions committed that wrote changes (one carries every mutation waiting: group commit).",
            self.transactions.get(),
        );
        text.counter(
            "flowgate_store_transactions_failed_total",
            "Store transactions that failed; nothing of them was kept.",
            self.transactions_failed.get(),
        );
        text.histogram(
            "flowgate_store_commit_duration_seconds",
            "Time from beginning a store transaction that wrote to its durable commit.",
            &self.commit_duration,
        );
        let name = "flowgate_store_mutations_total";
        text.header(
            name,
            Kind::Counter,
            "Mutations of the model, by outcome: committed, rejected (by EC2's or admin's rules), failed (their transaction did).",
        );
        for (outcome, counter) in [
            ("committed", &self.mutations_committed),
            ("rejected", &self.mutations_rejected),
            ("failed", &self.mutations_failed),
        ] {
            text.sample(name, &[("outcome", outcome)], counter.get());
        }
        text.counter(
            "flowgate_store_external_changes_total",
            "Object changes committed by other processes or nodes and applied to this one's model.",
            self.external_changes.get(),
        );
        if postgres {
            text.counter(
                "flowgate_store_listener_lost_total",
                "Times the PostgreSQL listener for other nodes' commits lost its connection.",
                self.listener_lost.get(),
            );
        }
        text.gauge(
            "flowgate_store_revision",
            "The revision of the committed model (grows by one per transaction, whichever node committed it).",
            revision,
        );
    }
}
