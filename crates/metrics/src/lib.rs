//! Metrics in the Prometheus text exposition format, hand-rolled on
//! atomics: counters, gauges, counters by label values, a duration
//! histogram with fixed buckets, and [`Text`], which writes them with one
//! `# HELP` and `# TYPE` per metric. The controller, the EC2 API and the
//! store count with these; `flowgate serve` renders them all at `/metrics`.
//! The handful of metrics flowgate has do not justify a metrics framework.

use std::collections::BTreeMap;
use std::fmt::{Display, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of every [`Histogram`]'s buckets: from half a
/// millisecond (a switch's barrier reply, a read) to seconds (a commit
/// stuck behind a slow disk).
pub const DURATION_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A count that only grows.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }

    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one away.
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    /// The value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Counters keyed by the values of `N` labels (packet-in reasons; an API
/// action and its answer). Every distinct value makes a series that lives
/// for good: callers pass values from a bounded set, never what a client
/// sent unchecked.
#[derive(Debug)]
pub struct LabeledCounter<const N: usize = 1> {
    values: Mutex<BTreeMap<[String; N], u64>>,
}

impl<const N: usize> Default for LabeledCounter<N> {
    fn default() -> Self {
        LabeledCounter {
            values: Mutex::new(BTreeMap::new()),
        }
    }
}

impl<const N: usize> LabeledCounter<N> {
    /// Adds one to the counter of these label values.
    pub fn inc(&self, labels: [&str; N]) {
        // A panic while holding the lock cannot leave a count half-made,
        // so a poisoned lock is still usable.
        let mut values = self.values.lock().unwrap_or_else(|p| p.into_inner());
        *values.entry(labels.map(str::to_string)).or_default() += 1;
    }

    /// The counter of these label values (0 if never counted).
    pub fn get(&self, labels: [&str; N]) -> u64 {
        let values = self.values.lock().unwrap_or_else(|p| p.into_inner());
        values.get(&labels.map(str::to_string)).copied().unwrap_or(0)
    }

    /// Every counted combination of label values and its count, sorted.
    pub fn snapshot(&self) -> Vec<([String; N], u64)> {
        let values = self.values.lock().unwrap_or_else(|p| p.into_inner());
        values.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

/// A duration histogram with the buckets of [`DURATION_BUCKETS`].
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; DURATION_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (bound, bucket) in DURATION_BUCKETS.iter().zip(&self.buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// What a metric is, for its `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only grows.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations counted in buckets.
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Prometheus text being written: each metric is a header ([`Text::header`])
/// followed by its samples. Names and help texts are the callers' constants;
/// label values are escaped.
#[derive(Debug, Default)]
pub struct Text {
    out: String,
}

impl Text {
    /// Nothing written yet.
    pub fn new() -> Text {
        Text::default()
    }

    /// The `# HELP` and `# TYPE` lines of metric `name`; its samples follow.
    pub fn header(&mut self, name: &str, kind: Kind, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {}", kind.name());
    }

    /// One sample: `name{labels} value`.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, label_value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{label}=\"{}\"", escape(label_value));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A counter without labels.
    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.header(name, Kind::Counter, help);
        self.sample(name, &[], value);
    }

    /// A gauge without labels.
    pub fn gauge(&mut self, name: &str, help: &str, value: impl Display) {
        self.header(name, Kind::Gauge, help);
        self.sample(name, &[], value);
    }

    /// A counter by label values, the labels named `label_names`.
    pub fn labeled_counter<const N: usize>(
        &mut self,
        name: &str,
        help: &str,
        label_names: [&str; N],
        counter: &LabeledCounter<N>,
    ) {
        self.header(name, Kind::Counter, help);
        for (values, count) in counter.snapshot() {
            let labels: [(&str, &str); N] = std::array::from_fn(|i| (label_names[i], values[i].as_str()));
            self.sample(name, &labels, count);
        }
    }

    /// A histogram: its cumulative buckets, sum (seconds) and count.
    pub fn histogram(&mut self, name: &str, help: &str, histogram: &Histogram) {
        self.header(name, Kind::Histogram, help);
        let bucket = format!("{name}_bucket");
        for (bound, count) in DURATION_BUCKETS.iter().zip(&histogram.buckets) {
            self.sample(
                &bucket,
                &[("le", &bound.to_string())],
                count.load(Ordering::Relaxed),
            );
        }
        let count = histogram.count();
        self.sample(&bucket, &[("le", "+Inf")], count);
        let sum = histogram.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        self.sample(&format!("{name}_sum"), &[], sum);
        self.sample(&format!("{name}_count"), &[], count);
    }

    /// The text written.
    pub fn finish(self) -> String {
        self.out
    }
}

/// A label value as the text format quotes it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_gauges_count() {
        let counter = Counter::default();
        counter.inc();
        counter.add(4);
        assert_eq!(counter.get(), 5);
        let gauge = Gauge::default();
        gauge.set(3);
        gauge.inc();
        gauge.dec();
        gauge.dec();
        assert_eq!(gauge.get(), 2);
    }

    #[test]
    fn labeled_counters_keep_combinations_apart() {
        let requests = LabeledCounter::<2>::default();
        requests.inc(["DescribeAddresses", "ok"]);
        requests.inc(["DescribeAddresses", "ok"]);
        requests.inc(["DescribeAddresses", "AuthFailure"]);
        assert_eq!(requests.get(["DescribeAddresses", "ok"]), 2);
        assert_eq!(requests.get(["DescribeAddresses", "AuthFailure"]), 1);
        assert_eq!(requests.get(["AllocateAddress", "ok"]), 0);
        let mut text = Text::new();
        text.labeled_counter("api_total", "Requests.", ["action", "code"], &requests);
        assert_eq!(
            text.finish(),
            "# HELP api_total Requests.\n# TYPE api_total counter\n\
             api_total{action=\"DescribeAddresses\",code=\"AuthFailure\"} 1\n\
             api_total{action=\"DescribeAddresses\",code=\"ok\"} 2\n"
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let histogram = Histogram::default();
        histogram.observe(Duration::from_micros(300));
        histogram.observe(Duration::from_millis(2));
        histogram.observe(Duration::from_secs(7));
        assert_eq!(histogram.count(), 3);
        let mut text = Text::new();
        text.histogram("took_seconds", "Time taken.", &histogram);
        let text = text.finish();
        for line in [
            "# TYPE took_seconds histogram",
            "took_seconds_bucket{le=\"0.0005\"} 1\n",
            "took_seconds_bucket{le=\"0.001\"} 1\n",
            "took_seconds_bucket{le=\"0.0025\"} 2\n",
            "took_seconds_bucket{le=\"5\"} 2\n",
            "took_seconds_bucket{le=\"+Inf\"} 3\n",
            "took_seconds_sum 7.0023\n",
            "took_seconds_count 3\n",
        ] {
            assert!(text.contains(line), "{line:?} missing from\n{text}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let mut text = Text::new();
        text.gauge("plain", "No labels.", 1);
        text.header("odd", Kind::Gauge, "Odd label values.");
        text.sample("odd", &[("name", "a \"b\"\\\nc")], -1);
        assert_eq!(
            text.finish(),
            "# HELP plain No labels.\n# TYPE plain gauge\nplain 1\n\
             # HELP odd Odd label values.\n# TYPE odd gauge\n\
             odd{name=\"a \\\"b\\\"\\\\\\nc\"} -1\n"
        );
    }
}
