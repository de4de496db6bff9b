//! What the process has used so far, for run summaries and benchmarks (Linux
//! `/proc`; elsewhere the readings are None rather than a wrong number).

/// Peak resident set size of this process (VmHWM), octets.
pub fn peak_rss_bytes() -> Option<u64> {
    status_kib("VmHWM:").map(|k| k * 1024)
}

/// Resident set size of this process now (VmRSS), octets.
pub fn resident_bytes() -> Option<u64> {
    status_kib("VmRSS:").map(|k| k * 1024)
}

/// Starts a new peak: the kernel resets VmHWM to the current RSS when 5 is
/// written to `/proc/self/clear_refs`. Callers that also want the whole run's
/// peak must read [`peak_rss_bytes`] first.
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// CPU time of the process so far (user + system, every thread), seconds.
/// `/proc/self/stat` counts it in ticks of the kernel ABI's fixed USER_HZ (100).
pub fn cpu_seconds() -> Option<f64> {
    stat_cpu_seconds("/proc/self/stat")
}

/// CPU time of the calling thread so far (user + system), seconds: in a phase
/// whose other threads are workers, the sequential part that bounds its wall time.
pub fn thread_cpu_seconds() -> Option<f64> {
    stat_cpu_seconds("/proc/thread-self/stat")
}

fn stat_cpu_seconds(file: &str) -> Option<f64> {
    const USER_HZ: f64 = 100.0;
    let stat = std::fs::read_to_string(file).ok()?;
    // Fields after the parenthesised command name, which may itself hold spaces.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn peak_after_reset_sees_a_new_allocation() {
        if super::peak_rss_bytes().is_none() {
            return; // not Linux: nothing to measure
        }
        super::reset_peak_rss();
        let block = vec![1u8; 64 << 20];
        std::hint::black_box(&block);
        let peak = super::peak_rss_bytes().unwrap();
        assert!(peak >= 64 << 20, "{peak}");
    }

    #[test]
    fn cpu_seconds_grow_with_work() {
        let Some(before) = super::cpu_seconds() else {
            return; // not Linux: nothing to measure
        };
        let mut x = 0u64;
        let t = std::time::Instant::now();
        while t.elapsed().as_millis() < 300 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let after = super::cpu_seconds().unwrap();
        assert!(after - before >= 0.1, "{before} -> {after}");
        let thread = super::thread_cpu_seconds().unwrap();
        assert!(
            thread >= 0.1 && thread <= after + 0.02,
            "{thread} of {after}"
        );
    }
}
