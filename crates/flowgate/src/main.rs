//! The `flowgate` command.
fn main() {}
