//! What the tests and benchmarks read about a process from Linux `/proc`.

/// A `/proc/<pid>/status` field in KiB, e.g. `"VmRSS:"` (resident now) or
/// `"VmHWM:"` (peak resident set); `None` off Linux, for a process gone, or
/// a field it does not have.
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_and_nothing_for_an_unknown_field() {
        if cfg!(target_os = "linux") {
            // The current size first: the peak read after it is at least as large.
            let now = proc_status_kib(std::process::id(), "VmRSS:").expect("VmRSS");
            let peak = proc_status_kib(std::process::id(), "VmHWM:").expect("VmHWM");
            assert!(peak >= now && now > 0, "peak {peak} KiB, now {now} KiB");
        }
        assert_eq!(proc_status_kib(std::process::id(), "NoSuchField:"), None);
    }
}
