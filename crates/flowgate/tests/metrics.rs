//! `/metrics` of the real `flowgate serve`: after signed EC2 calls (one
//! refused by EC2's rules, one with a bad signature, one naming an action
//! that does not exist, one beyond the rate limit), the API's requests are counted by action and code,
//! the store counted the commit, the controller's metrics are still there,
//! the election's only on PostgreSQL, and the whole is valid Prometheus
//! text (checked by a small parser: promtool is not installed here).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{Keys, Server, between, free_port, scrape_metrics, signed_post};
use testbed::wait_until;

#[test]
fn metrics_count_api_requests_store_commits_and_render_valid_text() {
    let metrics_port = free_port();
    // Reads get a bucket of two tokens refilled every ~17 minutes: the
    // third read within the test is refused, whatever the machine's speed.
    let mut server = Server::prepare(&format!(
        "[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n\
         [api]\nread_requests_per_second = 0.001\nread_request_burst = 2\n"
    ));
    server.add_pool();
    // Made before serve starts, so that no request is spent waiting for
    // the server to see it.
    let alice = server.account("alice");
    // Serving once launched: the metrics endpoint is up by then.
    server.launch();
    let before = Samples::parse(
        &scrape_metrics(metrics_port)
            .unwrap_or_else(|| panic!("no /metrics on port {metrics_port}:\n{}", server.log())),
    );

    let call = |keys: &Keys, body: &str| signed_post(server.port, keys, body).expect("the server answers");
    let (status, _) = call(&alice, "Action=DescribeAddresses&Version=2016-11-15");
    assert_eq!(status, 200);
    let (status, allocated) = call(&alice, "Action=AllocateAddress&Domain=vpc&Version=2016-11-15");
    assert_eq!(status, 200, "{allocated}");
    let (status, refused) = call(
        &alice,
        "Action=ReleaseAddress&AllocationId=eipalloc-0123456789abcdef0&Version=2016-11-15",
    );
    assert_eq!(status, 400, "{refused}");
    let release_code = between(&refused, "<Code>", "</Code>")[0].to_string();
    let forged = Keys {
        secret_access_key: "not-the-secret".into(),
        ..alice.clone()
    };
    let (status, forged_answer) = call(&forged, "Action=DescribeAddresses&Version=2016-11-15");
    assert_eq!(status, 403, "{forged_answer}");
    // Not a write, so charged to the read bucket: its second token.
    let (status, unknown) = call(&alice, "Action=FrobnicateWidgets&Version=2016-11-15");
    assert_eq!(status, 400, "{unknown}");
    let (status, limited) = call(&alice, "Action=DescribeAddresses&Version=2016-11-15");
    assert_eq!(status, 503, "{limited}");

    let text = scrape_metrics(metrics_port).unwrap();
    let after = Samples::parse(&text);
    let requests = |action: &str, code: &str| {
        after.value(&format!(
            "flowgate_api_requests_total{{action=\"{action}\",code=\"{code}\"}}"
        ))
    };
    assert_eq!(requests("DescribeAddresses", "ok"), Some(1.0), "{text}");
    assert_eq!(requests("AllocateAddress", "ok"), Some(1.0), "{text}");
    assert_eq!(requests("ReleaseAddress", &release_code), Some(1.0), "{text}");
    assert_eq!(
        requests("DescribeAddresses", "SignatureDoesNotMatch"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(requests("unknown", "InvalidAction"), Some(1.0), "{text}");
    assert_eq!(
        requests("DescribeAddresses", "RequestLimitExceeded"),
        Some(1.0),
        "{text}"
    );
    assert!(
        !text.contains("FrobnicateWidgets"),
        "a client's action name became a label:\n{text}"
    );
    let answered: f64 = after.family_sum("flowgate_api_requests_total");
    assert_eq!(answered, 6.0, "{text}");
    assert_eq!(
        after.value("flowgate_api_request_duration_seconds_count"),
        Some(6.0),
        "{text}"
    );
    assert_eq!(
        after.value("flowgate_api_requests_in_progress"),
        Some(0.0),
        "{text}"
    );
    let refused = |reason: &str| {
        after.value(&format!(
            "flowgate_api_requests_refused_total{{reason=\"{reason}\"}}"
        ))
    };
    assert_eq!(refused("rate_limit"), Some(1.0), "{text}");
    assert_eq!(refused("in_progress"), Some(0.0), "{text}");
    assert_eq!(refused("body_timeout"), Some(0.0), "{text}");

    // AllocateAddress committed one transaction; the refused release none.
    let grew = |name: &str| after.value(name).unwrap_or(0.0) - before.value(name).unwrap_or(0.0);
    assert_eq!(grew("flowgate_store_transactions_total"), 1.0, "{text}");
    assert_eq!(grew("flowgate_store_revision"), 1.0, "{text}");
    assert!(
        grew("flowgate_store_mutations_total{outcome=\"committed\"}") >= 1.0,
        "{text}"
    );
    assert!(
        grew("flowgate_store_commit_duration_seconds_count") >= 1.0,
        "{text}"
    );
    assert_eq!(
        after.value("flowgate_store_transactions_failed_total"),
        Some(0.0),
        "{text}"
    );

    // The controller's metrics are still there.
    assert_eq!(after.value("flowgate_switches_connected"), Some(0.0), "{text}");
    assert!(after.value("flowgate_reconciles_total").is_some(), "{text}");
    // The election's only with one (PostgreSQL).
    match server.postgres {
        None => {
            assert!(!text.contains("flowgate_node_leader"), "{text}");
            assert!(!text.contains("flowgate_store_listener_lost_total"), "{text}");
        }
        Some(_) => {
            assert_eq!(
                after.value("flowgate_store_listener_lost_total"),
                Some(0.0),
                "{text}"
            );
            // The only node leads once the election has answered.
            wait_until(Duration::from_secs(20), Duration::from_millis(50), || {
                let samples = Samples::parse(&scrape_metrics(metrics_port).unwrap_or_default());
                samples.value("flowgate_node_leader") == Some(1.0)
                    && samples.value("flowgate_election_epoch").is_some_and(|e| e > 0.0)
            })
            .unwrap_or_else(|_| panic!("this node never led:\n{text}"));
        }
    }
}

/// The samples of a Prometheus text exposition, each `name{labels}` with
/// its value, after checking the text is valid: every sample belongs to a
/// metric declared by one `# HELP` and one `# TYPE` line before it, each
/// metric's lines are together, and every sample is `name{labels} value`.
struct Samples(BTreeMap<String, f64>);

impl Samples {
    fn parse(text: &str) -> Samples {
        let mut helped = BTreeSet::new();
        let mut typed = BTreeMap::new();
        let mut finished = BTreeSet::new();
        let mut current: Option<String> = None;
        let mut samples = BTreeMap::new();
        for line in text.lines() {
            if let Some(comment) = line.strip_prefix("# ") {
                let mut words = comment.splitn(3, ' ');
                let (keyword, name, rest) = (
                    words.next().unwrap(),
                    words.next().expect("a metric name").to_string(),
                    words.next().unwrap_or_default(),
                );
                assert!(valid_name(&name), "bad metric name in {line:?}");
                if current.as_ref() != Some(&name)
                    && let Some(done) = current.replace(name.clone())
                {
                    finished.insert(done);
                }
                assert!(!finished.contains(&name), "{name} is not in one piece");
                match keyword {
                    "HELP" => {
                        assert!(!rest.is_empty(), "{name} has an empty help");
                        assert!(helped.insert(name.clone()), "{name} has two HELP lines");
                    }
                    "TYPE" => {
                        assert!(
                            matches!(rest, "counter" | "gauge" | "histogram"),
                            "{name} has type {rest:?}"
                        );
                        assert!(
                            typed.insert(name.clone(), rest.to_string()).is_none(),
                            "{name} has two TYPE lines"
                        );
                    }
                    other => panic!("unexpected comment {other:?} in {line:?}"),
                }
                continue;
            }
            assert!(!line.is_empty(), "empty line in\n{text}");
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("no value in {line:?}"));
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line:?}"));
            let name = match series.split_once('{') {
                Some((name, labels)) => {
                    let labels = labels
                        .strip_suffix('}')
                        .unwrap_or_else(|| panic!("unclosed labels in {line:?}"));
                    check_labels(labels, line);
                    name
                }
                None => series,
            };
            assert!(valid_name(name), "bad sample name in {line:?}");
            let family = current
                .clone()
                .unwrap_or_else(|| panic!("{line:?} before any TYPE"));
            let kind = typed
                .get(&family)
                .unwrap_or_else(|| panic!("{family} has no TYPE before {line:?}"));
            assert!(helped.contains(&family), "{family} has no HELP before {line:?}");
            let belongs = match kind.as_str() {
                "histogram" => ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|suffix| name.strip_suffix(suffix) == Some(family.as_str())),
                _ => name == family,
            };
            assert!(belongs, "{line:?} follows the TYPE of {family}");
            assert!(
                samples.insert(series.to_string(), value).is_none(),
                "{series} twice"
            );
        }
        for name in typed.keys() {
            assert!(helped.contains(name), "{name} has no HELP");
        }
        Samples(samples)
    }

    /// The value of one series, written as the text has it.
    fn value(&self, series: &str) -> Option<f64> {
        self.0.get(series).copied()
    }

    /// The sum of every series of metric `name`.
    fn family_sum(&self, name: &str) -> f64 {
        self.0
            .iter()
            .filter(|(series, _)| series.as_str() == name || series.starts_with(&format!("{name}{{")))
            .map(|(_, value)| value)
            .sum()
    }
}

/// Whether `name` is a valid metric or label name.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Checks `labels` is `name="value"` pairs separated by commas, values
/// escaped as the format wants.
fn check_labels(labels: &str, line: &str) {
    let mut rest = labels;
    loop {
        let (name, after) = rest
            .split_once("=\"")
            .unwrap_or_else(|| panic!("bad labels in {line:?}"));
        assert!(valid_name(name), "bad label name {name:?} in {line:?}");
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => {
                    let escaped = chars.next().map(|(_, c)| c);
                    assert!(
                        matches!(escaped, Some('\\' | '"' | 'n')),
                        "bad escape in {line:?}"
                    );
                }
                Some((i, '"')) => break i,
                Some(_) => {}
                None => panic!("unterminated label value in {line:?}"),
            }
        };
        rest = &after[end + 1..];
        if rest.is_empty() {
            return;
        }
        rest = rest
            .strip_prefix(',')
            .unwrap_or_else(|| panic!("labels not separated by commas in {line:?}"));
    }
}
