//! Removes test-bed leftovers (namespaces, daemons, directories) of test
//! processes that died without cleaning up. Run it after a test suite.
//!
//! Prints each thing removed; exits with status 1 if something could not
//! be removed, 2 if the leftovers could not even be listed.

use std::process::ExitCode;

fn main() -> ExitCode {
    match testbed::sweep_stale() {
        Ok(report) => {
            for ns in &report.namespaces {
                println!("removed netns {ns}");
            }
            for dir in &report.directories {
                println!("removed directory {}", dir.display());
            }
            for failure in &report.failures {
                eprintln!("testbed-sweep: could not remove {failure}");
            }
            if report.is_empty() {
                println!("nothing to sweep");
            }
            if report.failures.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("testbed-sweep: {e}");
            ExitCode::from(2)
        }
    }
}
