//! Exact quantiles of a run's best-match separations with bounded memory.
//!
//! Every separation is counted in a histogram of 2^20 buckets by the top
//! bits of its order key (a key whose unsigned order is `f64::total_cmp`'s),
//! as batches are matched; the values themselves go to a raw scratch file
//! (8 octets each, for spilled batches) or stay in memory (the last batch).
//! A quantile's rank then lies in one known bucket: one pass over the values
//! collects that bucket's and selects the rank among them. A bucket holding
//! too many values to collect (separations piled up in a narrow range) is
//! refined by a histogram of its next 20 bits, one more pass each time, until
//! it is small enough or all 64 bits are known: memory stays bounded whatever
//! the distribution, and the result is the exact value `summarise` gives by
//! sorting everything.

use crate::run::RunError;
use crate::spill::SpillDir;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::PathBuf;

/// Key bits resolved per histogram level.
const LEVEL_BITS: u32 = 20;
/// Values collected for the final selection at most (16 MiB).
const COLLECT_LIMIT: u64 = 1 << 21;
/// Values read per block from the scratch file.
const READ_VALUES: usize = 1 << 16;

/// A key whose unsigned order is `f64::total_cmp`'s order.
fn order_key(x: f64) -> u64 {
    let bits = x.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | 1 << 63
    }
}

fn from_order_key(key: u64) -> f64 {
    f64::from_bits(if key >> 63 == 1 {
        key & !(1 << 63)
    } else {
        !key
    })
}

/// The separations of a run (module docs).
pub struct Separations {
    histogram: Histogram,
    file: Option<(PathBuf, BufWriter<File>)>,
    spilled: u64,
    kept: Vec<f64>,
    collect_limit: u64,
}

impl Default for Separations {
    fn default() -> Self {
        Self {
            histogram: Histogram::default(),
            file: None,
            spilled: 0,
            kept: Vec::new(),
            collect_limit: COLLECT_LIMIT,
        }
    }
}

/// Separations by bucket of the top bits of their order keys.
#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

impl Histogram {
    fn add(&mut self, sep: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; 1 << LEVEL_BITS];
        }
        self.counts[(order_key(sep) >> (64 - LEVEL_BITS)) as usize] += 1;
        self.total += 1;
    }
}

impl Separations {
    /// Adds separations whose records go to disk: the values go to a scratch
    /// file in `spill`'s folder.
    pub fn add_spilled(
        &mut self,
        spill: &mut SpillDir,
        seps: impl IntoIterator<Item = f64>,
    ) -> Result<(), RunError> {
        if self.file.is_none() {
            let path = spill.scratch_path("separations.f64")?;
            let file = File::create(&path).map_err(|source| io_error(&path, source))?;
            self.file = Some((path, BufWriter::with_capacity(1 << 20, file)));
        }
        let Some((path, writer)) = &mut self.file else {
            unreachable!("opened above")
        };
        for sep in seps {
            writer
                .write_all(&sep.to_le_bytes())
                .map_err(|source| io_error(path, source))?;
            self.spilled += 1;
            self.histogram.add(sep);
        }
        Ok(())
    }

    /// Adds separations kept in memory (the last batch's).
    pub fn add_kept(&mut self, seps: impl IntoIterator<Item = f64>) {
        for sep in seps {
            self.kept.push(sep);
            self.histogram.add(sep);
        }
    }

    /// The value of rank `round((n − 1) q)` in `total_cmp` order, as
    /// `summarise` takes it; None when there is no separation.
    pub fn quantile(&mut self, q: f64) -> Result<Option<f64>, RunError> {
        let Some(last) = self.histogram.total.checked_sub(1) else {
            return Ok(None);
        };
        self.select((last as f64 * q).round() as u64).map(Some)
    }

    fn select(&mut self, rank: u64) -> Result<f64, RunError> {
        let counts = &self.histogram.counts;
        let (mut prefix, mut rank) = locate(counts, rank);
        let mut count = counts[prefix as usize];
        let mut known = LEVEL_BITS;
        loop {
            if known == 64 {
                return Ok(from_order_key(prefix));
            }
            let shift = 64 - known;
            if count <= self.collect_limit {
                let mut keys = Vec::with_capacity(count as usize);
                self.for_each_key(|k| {
                    if k >> shift == prefix {
                        keys.push(k);
                    }
                })?;
                let rank = (rank as usize).min(keys.len().saturating_sub(1));
                return Ok(from_order_key(*keys.select_nth_unstable(rank).1));
            }
            let bits = shift.min(LEVEL_BITS);
            let mut counts = vec![0u64; 1 << bits];
            let mask = (1u64 << bits) - 1;
            self.for_each_key(|k| {
                if k >> shift == prefix {
                    counts[((k >> (shift - bits)) & mask) as usize] += 1;
                }
            })?;
            let (bucket, within) = locate(&counts, rank);
            (prefix, rank, count) = (prefix << bits | bucket, within, counts[bucket as usize]);
            known += bits;
        }
    }

    /// Calls `f` with the order key of every separation, spilled then kept.
    fn for_each_key(&mut self, mut f: impl FnMut(u64)) -> Result<(), RunError> {
        if let Some((path, writer)) = &mut self.file {
            writer.flush().map_err(|source| io_error(path, source))?;
            let file = File::open(&*path).map_err(|source| io_error(path, source))?;
            let mut reader = BufReader::with_capacity(8 * READ_VALUES, file);
            let mut block = vec![0u8; 8 * READ_VALUES];
            let mut left = self.spilled;
            while left > 0 {
                let n = left.min(READ_VALUES as u64) as usize;
                reader
                    .read_exact(&mut block[..8 * n])
                    .map_err(|source| io_error(path, source))?;
                for value in block[..8 * n].chunks_exact(8) {
                    f(order_key(f64::from_le_bytes(
                        value.try_into().expect("8 octets"),
                    )));
                }
                left -= n as u64;
            }
        }
        self.kept.iter().for_each(|&v| f(order_key(v)));
        Ok(())
    }
}

/// The bucket of `counts` holding rank `rank`, and the rank within it.
fn locate(counts: &[u64], rank: u64) -> (u64, u64) {
    let mut below = 0;
    for (bucket, &n) in counts.iter().enumerate() {
        if rank < below + n {
            return (bucket as u64, rank - below);
        }
        below += n;
    }
    // Unreachable for a rank below the total; the last bucket is harmless.
    (counts.len().saturating_sub(1) as u64, 0)
}

fn io_error(path: &std::path::Path, source: std::io::Error) -> RunError {
    RunError::Io {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_key_orders_as_total_cmp_and_inverts() {
        let xs = [
            -1e300,
            -2.5,
            -0.0,
            0.0,
            1e-310,
            0.5,
            3.0,
            1e300,
            f64::INFINITY,
        ];
        for w in xs.windows(2) {
            assert!(order_key(w[0]) < order_key(w[1]), "{w:?}");
        }
        for x in xs {
            assert_eq!(from_order_key(order_key(x)).to_bits(), x.to_bits());
        }
    }

    /// Quantiles equal sorting every value and taking the rank: values spread
    /// over many buckets, piled up in one bucket (refined level by level, as a
    /// tiny collect limit forces), and equal; spilled, kept, or both.
    #[test]
    fn quantiles_equal_the_sorted_rank() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = 7u64;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let spread: Vec<f64> = (0..3000).map(|_| next() * 1000.0).collect();
        let piled: Vec<f64> = (0..3000).map(|_| 30.0 + next() * 1e-9).collect();
        let mixed: Vec<f64> = (0..3000)
            .map(|i| if i % 3 == 0 { 12.5 } else { next() })
            .collect();
        for (values, limit) in [
            (&spread, COLLECT_LIMIT),
            (&piled, COLLECT_LIMIT),
            (&piled, 4),
            (&mixed, 4),
            (&vec![7.0; 50], 4),
            (&vec![1.0], 4),
        ] {
            let mut sorted = values.clone();
            sorted.sort_by(f64::total_cmp);
            for split in [0, values.len() / 3, values.len()] {
                let mut spill = SpillDir::new(dir.path()).unwrap();
                let mut seps = Separations {
                    collect_limit: limit,
                    ..Default::default()
                };
                seps.add_spilled(&mut spill, values[..split].iter().copied())
                    .unwrap();
                seps.add_kept(values[split..].iter().copied());
                for q in [0.0, 0.5, 0.9, 1.0] {
                    let want = sorted[((values.len() - 1) as f64 * q).round() as usize];
                    let got = seps.quantile(q).unwrap().unwrap();
                    assert_eq!(got.to_bits(), want.to_bits(), "limit {limit} q {q}");
                }
            }
        }
        assert_eq!(Separations::default().quantile(0.5).unwrap(), None);
    }
}
