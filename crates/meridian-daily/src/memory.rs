//! Peak resident memory per stage, on top of [`meridian_core::resources`],
//! keeping the whole run's peak across the per-stage resets.

use meridian_core::resources;

/// Peak RSS of the whole process so far, octets.
pub fn process_peak_rss() -> Option<u64> {
    PROCESS_PEAK.with_max(resources::peak_rss_bytes())
}

/// Starts a new peak measurement.
pub fn reset_peak_rss() {
    // Remember the process-wide peak before the kernel forgets it.
    process_peak_rss();
    resources::reset_peak_rss();
}

/// Peak RSS since the last [`reset_peak_rss`], octets.
pub fn peak_rss_since_reset() -> Option<u64> {
    let peak = resources::peak_rss_bytes();
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
    fn the_process_peak_survives_a_reset() {
        if super::process_peak_rss().is_none() {
            return; // not Linux: nothing to measure
        }
        let block = vec![1u8; 64 << 20];
        std::hint::black_box(&block);
        let before = super::peak_rss_since_reset().unwrap();
        drop(block);
        super::reset_peak_rss();
        assert!(super::process_peak_rss().unwrap() >= before);
    }
}
