//! Bounded polling.

use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Polls `condition` every `poll_interval` until it returns `true`, giving up
/// with [`Error::Timeout`] after `timeout`.
///
/// The condition is always evaluated at least once, and once more at the
/// deadline, so a zero timeout means "check now".
pub fn wait_until<F>(timeout: Duration, poll_interval: Duration, condition: F) -> Result<()>
where
    F: FnMut() -> bool,
{
    wait_for("a condition", timeout, poll_interval, condition)
}

/// [`wait_until`] with a description of what is awaited, for the error.
pub(crate) fn wait_for<F>(
    what: &str,
    timeout: Duration,
    poll_interval: Duration,
    mut condition: F,
) -> Result<()>
where
    F: FnMut() -> bool,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return Ok(());
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(Error::Timeout {
                what: what.to_owned(),
                timeout,
            });
        }
        thread::sleep(poll_interval.min(deadline - now));
    }
}
