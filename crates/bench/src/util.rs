//! Small helpers shared by both sides of the comparison: running a tool,
//! reading a process's resident memory, medians, formatting.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Runs `command` to completion and returns its standard output. The tools
/// run this way (`ovn-nbctl`, `ovs-vsctl`, `flowgate admin`) bound
/// themselves with their own `--timeout`.
pub fn run(command: &mut Command) -> Result<String> {
    let line = abridged(command);
    let out = command.output().map_err(|e| Error::Command {
        command: line.clone(),
        detail: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(Error::Command {
            command: line,
            detail: format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `command` and returns how long it took.
pub fn timed(command: &mut Command) -> Result<Duration> {
    let t = Instant::now();
    run(command)?;
    Ok(t.elapsed())
}

/// The command line, cut short: a bulk `ovn-nbctl` has thousands of arguments.
fn abridged(command: &Command) -> String {
    let mut line = command.get_program().to_string_lossy().into_owned();
    let args: Vec<_> = command.get_args().collect();
    for a in args.iter().take(12) {
        line.push(' ');
        line.push_str(&a.to_string_lossy());
    }
    if args.len() > 12 {
        line.push_str(&format!(" ... ({} arguments)", args.len()));
    }
    line
}

/// Resident memory (`VmRSS`) of a process, in bytes.
pub fn rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kib| kib * 1024)
}

/// CPU time (user and system) a process has used so far.
pub fn cpu_time(pid: u32) -> Duration {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let ticks = *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    });
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name, which may hold spaces:
    // state is field 3, utime 14 and stime 15.
    let fields: Vec<&str> = stat
        .rfind(')')
        .map(|i| stat[i + 1..].split_whitespace().collect())
        .unwrap_or_default();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    Duration::from_secs_f64((field(11) + field(12)) / ticks)
}

/// Total CPU time of several processes.
pub fn cpu_total(pids: &[u32]) -> Duration {
    pids.iter().map(|&p| cpu_time(p)).sum()
}

/// The median of some durations (zero for none).
pub fn median(samples: &[Duration]) -> Duration {
    let mut v = samples.to_vec();
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// A duration for a table: milliseconds below 10 s, else seconds.
pub fn human(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 10_000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// Bytes as MiB for a table.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1048576.0)
}

/// `a / b` as a ratio for a table.
pub fn ratio(a: f64, b: f64) -> String {
    if b <= 0.0 {
        "-".into()
    } else {
        format!("{:.1}x", a / b)
    }
}

/// The machine's 1-minute load average, as `uptime` shows it.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| {
            let f: Vec<&str> = l.split_whitespace().take(3).collect();
            (f.len() == 3).then(|| f.join(" "))
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Every `<tag>` element's text in `xml`, in order.
pub fn elements<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else { break };
        out.push(&after[..end]);
        rest = &after[end + close.len()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_in_order() {
        let xml = "<a><id>1</id><x/><id>2</id></a><id>3</id>";
        assert_eq!(elements(xml, "id"), vec!["1", "2", "3"]);
        assert!(elements(xml, "none").is_empty());
    }

    #[test]
    fn median_of_odd_and_empty() {
        let ms = Duration::from_millis;
        assert_eq!(median(&[ms(3), ms(1), ms(2)]), ms(2));
        assert_eq!(median(&[]), Duration::ZERO);
    }
}
