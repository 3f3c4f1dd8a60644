//! What the EC2 API counts for `/metrics`: requests by action and answer,
//! their duration, requests turned away by the limits, requests in
//! progress, and open connections.

use ::metrics::{Counter, Gauge, Histogram, Kind, LabeledCounter, Text};

/// The action label of requests naming no action flowgate knows (or none):
/// client-chosen names would make series without bound.
pub const UNKNOWN_ACTION: &str = "unknown";

/// The code label of requests answered without an error.
pub const OK: &str = "ok";

/// Why a request was turned away at the door, as its label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its account's token bucket was empty (`RequestLimitExceeded`).
    RateLimit,
    /// As many requests as allowed were in progress (`Unavailable`).
    InProgress,
    /// Its body did not arrive in time (`Unavailable`).
    BodyTimeout,
}

impl Refusal {
    const ALL: [Refusal; 3] = [Refusal::RateLimit, Refusal::InProgress, Refusal::BodyTimeout];

    fn label(self) -> &'static str {
        match self {
            Refusal::RateLimit => "rate_limit",
            Refusal::InProgress => "in_progress",
            Refusal::BodyTimeout => "body_timeout",
        }
    }
}

/// The API's counters.
#[derive(Debug, Default)]
pub struct ApiMetrics {
    /// Requests answered, by action ([`UNKNOWN_ACTION`] for any other) and
    /// EC2 error code ([`OK`] for success).
    requests: LabeledCounter<2>,
    /// Time from a request's arrival (before its body is read) to its answer.
    duration: Histogram,
    /// Requests turned away, by [`Refusal`].
    refused: [Counter; 3],
    /// Requests holding a place (past the bound on requests in progress).
    in_progress: Gauge,
    /// Connections open.
    connections: Gauge,
    /// Connections closed because a request's headers did not arrive in time.
    header_timeouts: Counter,
}

impl ApiMetrics {
    /// Counts one answered request: `action` must be a known action's name
    /// or [`UNKNOWN_ACTION`], `code` an EC2 error code or [`OK`].
    pub fn answered(&self, action: &'static str, code: &'static str, took: std::time::Duration) {
        self.requests.inc([action, code]);
        self.duration.observe(took);
    }

    /// Requests answered with `action` and `code` so far.
    pub fn requests(&self, action: &str, code: &str) -> u64 {
        self.requests.get([action, code])
    }

    /// Counts one request turned away.
    pub fn refused(&self, why: Refusal) {
        self.refused[why as usize].inc();
    }

    /// A request holding a place until the guard is dropped.
    pub fn in_progress(&self) -> Held<'_> {
        self.in_progress.inc();
        Held(&self.in_progress)
    }

    /// An open connection, counted until the guard is dropped.
    pub fn connection_open(&self) -> Held<'_> {
        self.connections.inc();
        Held(&self.connections)
    }

    /// Counts one connection closed for not sending its headers in time.
    pub fn header_timed_out(&self) {
        self.header_timeouts.inc();
    }

    /// Writes every metric to `text`.
    pub fn write(&self, text: &mut Text) {
        text.labeled_counter(
            "flowgate_api_requests_total",
            "EC2 API requests answered, by action (\"unknown\" for any other) and EC2 error code (\"ok\" for success).",
            ["action", "code"],
            &self.requests,
        );
        text.histogram(
            "flowgate_api_request_duration_seconds",
            "Time from an EC2 API request's arrival to its answer.",
            &self.duration,
        );
        let name = "flowgate_api_requests_refused_total";
        text.header(
            name,
            Kind::Counter,
            "EC2 API requests turned away: rate_limit (an account's bucket was empty), in_progress (api.max_requests_in_progress reached), body_timeout.",
        );
        for why in Refusal::ALL {
            text.sample(name, &[("reason", why.label())], self.refused[why as usize].get());
        }
        text.gauge(
            "flowgate_api_requests_in_progress",
            "EC2 API requests in progress.",
            self.in_progress.get(),
        );
        text.gauge(
            "flowgate_api_connections_open",
            "Connections open to the EC2 API (at most api.max_connections).",
            self.connections.get(),
        );
        text.counter(
            "flowgate_api_header_timeouts_total",
            "EC2 API connections closed because a request's headers did not arrive within api.header_timeout_seconds.",
            self.header_timeouts.get(),
        );
    }
}

/// One request in progress (or connection open), counted until dropped.
#[must_use]
pub struct Held<'a>(&'a Gauge);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn renders_requests_refusals_and_requests_in_progress() {
        let metrics = ApiMetrics::default();
        metrics.answered("DescribeAddresses", OK, Duration::from_millis(1));
        metrics.answered(UNKNOWN_ACTION, "InvalidAction", Duration::from_millis(1));
        metrics.refused(Refusal::BodyTimeout);
        let held = metrics.in_progress();
        let mut text = Text::new();
        metrics.write(&mut text);
        let text = text.finish();
        for line in [
            "flowgate_api_requests_total{action=\"DescribeAddresses\",code=\"ok\"} 1\n",
            "flowgate_api_requests_total{action=\"unknown\",code=\"InvalidAction\"} 1\n",
            "flowgate_api_request_duration_seconds_count 2\n",
            "flowgate_api_requests_refused_total{reason=\"rate_limit\"} 0\n",
            "flowgate_api_requests_refused_total{reason=\"body_timeout\"} 1\n",
            "flowgate_api_requests_in_progress 1\n",
        ] {
            assert!(text.contains(line), "{line:?} missing from\n{text}");
        }
        drop(held);
        let mut text = Text::new();
        metrics.write(&mut text);
        assert!(text.finish().contains("flowgate_api_requests_in_progress 0\n"));
    }
}
