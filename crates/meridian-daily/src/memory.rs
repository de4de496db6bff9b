//! Peak resident memory and CPU time per stage (Linux): VmHWM from /proc/self/status, which
//! the kernel lets a process reset by writing 5 to /proc/self/clear_refs.
//! Elsewhere these report None rather than a wrong number.

fn read_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Peak RSS of the whole process so far, octets.
pub fn process_peak_rss() -> Option<u64> {
    PROCESS_PEAK.with_max(read_status_kib("VmHWM:").map(|k| k * 1024))
}

/// Starts a new peak measurement.
pub fn reset_peak_rss() {
    // Remember the process-wide peak before the kernel forgets it.
    process_peak_rss();
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Peak RSS since the last [`reset_peak_rss`], octets.
pub fn peak_rss_since_reset() -> Option<u64> {
    let peak = read_status_kib("VmHWM:").map(|k| k * 1024);
    PROCESS_PEAK.with_max(peak);
    peak
}

/// The largest peak seen across resets.
struct ProcessPeak(std::sync::atomic::AtomicU64);

impl ProcessPeak {
    fn with_max(&self, v: Option<u64>) -> Option<u64> {
        let v = v?;
        let prev = self.0.fetch_max(v, std::sync::atomic::Ordering::Relaxed);
        Some(prev.max(v))
    }
}

static PROCESS_PEAK: ProcessPeak = ProcessPeak(std::sync::atomic::AtomicU64::new(0));

#[cfg(test)]
mod tests {
    #[test]
    fn peak_after_reset_sees_a_new_allocation() {
        if super::process_peak_rss().is_none() {
            return; // not Linux: nothing to measure
        }
        super::reset_peak_rss();
        let block = vec![1u8; 64 << 20];
        std::hint::black_box(&block);
        let peak = super::peak_rss_since_reset().unwrap();
        assert!(peak >= 64 << 20, "{peak}");
        assert!(super::process_peak_rss().unwrap() >= peak);
    }
}

/// CPU time (user + system, every thread) of the process so far, seconds (Linux:
/// /proc/self/stat, whose tick is the kernel ABI's fixed USER_HZ of 100).
/// Next to wall time it shows how well a stage used the cores, and it stays
/// comparable when other work shares the machine.
pub fn process_cpu_seconds() -> Option<f64> {
    const USER_HZ: f64 = 100.0;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name, which may itself hold spaces.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

#[cfg(test)]
mod cpu_tests {
    #[test]
    fn cpu_seconds_grow_with_work() {
        let Some(before) = super::process_cpu_seconds() else {
            return; // not Linux: nothing to measure
        };
        let mut x = 0u64;
        let t = std::time::Instant::now();
        while t.elapsed().as_millis() < 300 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let after = super::process_cpu_seconds().unwrap();
        assert!(after - before >= 0.1, "{before} -> {after}");
    }
}
