//! Synthetic decoded folders with known truth, for tests and benchmarks of this
//! stage and of the stages after it: packets of the three streams with chosen
//! losses, retransmissions and conflicts, written as `meridian-decode` would.
//!
//! Packet "bytes" are represented by a hash over the packet's header fields and
//! records, as the decoder's `packet_hash` is a hash of the real bytes.

use crate::gaps::SEQ_MODULUS;
use crate::manifest::Stream;
use meridian_core::ProductError;
use meridian_core::product::{write_all, write_file_atomic};
use meridian_core::records::{Attitude, Gap, Hk, Value, Window};
use std::path::Path;
use xxhash_rust::xxh3::Xxh3;

/// A small, fast, seedable generator (SplitMix64), so tests need no extra crates.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

/// The records one packet carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Window(Vec<Window>),
    Attitude(Vec<Attitude>),
    Hk(Vec<Hk>),
}

/// One generated packet.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    pub stream: Stream,
    pub seq: u16,
    pub packet_obt_ns: u64,
    pub hash: u64,
    pub payload: Payload,
}

impl Packet {
    fn build(stream: Stream, seq: u16, packet_obt_ns: u64, payload: Payload) -> Packet {
        let mut p = Packet {
            stream,
            seq,
            packet_obt_ns,
            hash: 0,
            payload,
        };
        p.rehash();
        p
    }

    /// Recomputes the hash from the content and stamps it on every record.
    fn rehash(&mut self) {
        let mut h = Xxh3::new();
        h.update(&self.stream.apid().to_be_bytes());
        h.update(&self.seq.to_be_bytes());
        h.update(&self.packet_obt_ns.to_be_bytes());
        h.update(format!("{:?}", self.payload_without_refs()).as_bytes());
        self.hash = h.digest();
        let (seq, t, hash) = (self.seq, self.packet_obt_ns, self.hash);
        match &mut self.payload {
            Payload::Window(v) => v.iter_mut().for_each(|r| {
                (r.seq, r.packet_obt_ns, r.packet_hash) = (seq, t, hash);
            }),
            Payload::Attitude(v) => v.iter_mut().for_each(|r| {
                (r.seq, r.packet_obt_ns, r.packet_hash) = (seq, t, hash);
            }),
            Payload::Hk(v) => v.iter_mut().for_each(|r| {
                (r.seq, r.packet_obt_ns, r.packet_hash) = (seq, t, hash);
            }),
        }
    }

    fn payload_without_refs(&self) -> Payload {
        let mut p = self.payload.clone();
        match &mut p {
            Payload::Window(v) => v.iter_mut().for_each(|r| r.packet_hash = 0),
            Payload::Attitude(v) => v.iter_mut().for_each(|r| r.packet_hash = 0),
            Payload::Hk(v) => v.iter_mut().for_each(|r| r.packet_hash = 0),
        }
        p
    }

    /// The same key with different bytes: one record value changed, and every
    /// record moved 30 s later (so the variants fall in different chunks).
    pub fn conflicting_variant(&self) -> Packet {
        const SHIFT: u64 = 30_000_000_000;
        let mut p = self.clone();
        match &mut p.payload {
            Payload::Window(v) => {
                v[0].samples[0] ^= 1;
                v.iter_mut().for_each(|r| r.obt_ns += SHIFT);
            }
            Payload::Attitude(v) => {
                v[0].q[0] += 1e-9;
                v.iter_mut().for_each(|r| r.obt_ns += SHIFT);
            }
            Payload::Hk(v) => {
                v[0].raw += 1.0;
                v.iter_mut().for_each(|r| r.obt_ns += SHIFT);
            }
        }
        p.rehash();
        p
    }
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct DayConfig {
    pub seed: u64,
    /// Start of the generated span, OBT ns.
    pub start_obt_ns: u64,
    pub duration_s: u64,
    /// Mean window packets per second.
    pub window_rate: f64,
    /// Samples per window (12 typical).
    pub samples: usize,
    /// Probability that a packet is lost (never delivered).
    pub loss: f64,
    /// Probability that a delivered packet is delivered again in another delivery.
    pub retransmit: f64,
    /// Number of deliveries the delivered packets are spread over.
    pub deliveries: usize,
    /// Each delivery holds one contiguous slice of time (like a dump), rather than
    /// packets of any time.
    pub contiguous: bool,
}

impl Default for DayConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            start_obt_ns: 500_000 * 1_000_000_000,
            duration_s: 600,
            window_rate: 2.0,
            samples: 12,
            loss: 0.02,
            retransmit: 0.05,
            deliveries: 8,
            contiguous: false,
        }
    }
}

/// A generated day with its truth.
#[derive(Debug, Clone)]
pub struct Day {
    /// Every packet generated, lost ones included, per stream in generation order.
    pub generated: Vec<Packet>,
    /// Deliveries: packets in delivery order, retransmissions included.
    pub deliveries: Vec<Vec<Packet>>,
    /// Expected gaps, sorted by (after_obt_ns, apid, first_missing_seq).
    pub gaps: Vec<Gap>,
    /// Number of packet occurrences that repeat an earlier one (same bytes).
    pub duplicates: u64,
}

const NS: u64 = 1_000_000_000;

/// Generates packets of the three streams, losses and retransmissions.
pub fn generate_day(cfg: &DayConfig) -> Day {
    let mut rng = SplitMix::new(cfg.seed);
    let mut generated = Vec::new();
    // Attitude: 4 samples a packet, one packet every 4 s, counts starting near the wrap.
    let mut seq = (SEQ_MODULUS - 40) as u16;
    let end = cfg.start_obt_ns + cfg.duration_s * NS;
    let mut t = cfg.start_obt_ns;
    while t < end {
        let recs = (0..4)
            .map(|i| Attitude {
                obt_ns: t + i * NS,
                q: [0.0, 0.0, ((t / NS + i) as f64 * 1e-3).sin(), 1.0],
                seq: 0,
                packet_obt_ns: 0,
                packet_hash: 0,
            })
            .collect();
        generated.push(Packet::build(
            Stream::Attitude,
            seq,
            t + 4 * NS,
            Payload::Attitude(recs),
        ));
        seq = ((seq as u64 + 1) % SEQ_MODULUS) as u16;
        t += 4 * NS;
    }
    // Housekeeping: 3 parameters every 8 s.
    let mut seq = 100u16;
    let mut t = cfg.start_obt_ns + 3 * NS;
    while t < end {
        let recs = ["FPA_TEMP_1", "HTR_MODE", "BUS_V"]
            .iter()
            .enumerate()
            .map(|(i, name)| Hk {
                obt_ns: t,
                sid: 1,
                param: (*name).to_owned(),
                raw: rng.below(1000) as f64,
                eng: if i == 1 {
                    Value::State("NOMINAL".into())
                } else {
                    Value::Number(rng.below(1000) as f64 * 0.01)
                },
                seq: 0,
                packet_obt_ns: 0,
                packet_hash: 0,
            })
            .collect();
        generated.push(Packet::build(Stream::Hk, seq, t, Payload::Hk(recs)));
        seq = ((seq as u64 + 1) % SEQ_MODULUS) as u16;
        t += 8 * NS;
    }
    // Windows: packets at random intervals, each with 1..=4 windows read out up to
    // 3 s before the packet time (so records straddle chunk boundaries).
    let mut seq = 16000u16;
    let mut t = cfg.start_obt_ns + NS;
    let mean_gap_ns = (NS as f64 / cfg.window_rate.max(1e-3)) as u64;
    let mut transit = 1u64;
    while t < end {
        let n = 1 + rng.below(4);
        let recs = (0..n)
            .map(|_| {
                transit += 1;
                Window {
                    transit_id: transit,
                    strip: rng.below(9) as u8,
                    row: 1 + rng.below(7) as u8,
                    fov: rng.below(2) as u8,
                    ac: rng.below(1966) as u16,
                    obt_ns: t - rng.below(3 * NS),
                    onboard_mag: 12_000 + rng.below(8000) as u16,
                    samples: (0..cfg.samples)
                        .map(|_| 1000 + rng.below(500) as u16)
                        .collect(),
                    seq: 0,
                    packet_obt_ns: 0,
                    packet_hash: 0,
                }
            })
            .collect();
        generated.push(Packet::build(Stream::Window, seq, t, Payload::Window(recs)));
        seq = ((seq as u64 + 1) % SEQ_MODULUS) as u16;
        t += 1 + rng.below(2 * mean_gap_ns);
    }
    let (delivered, gaps) = apply_losses(&generated, cfg.loss, &mut rng);
    let (deliveries, duplicates) = spread(delivered, cfg, &mut rng);
    Day {
        generated,
        deliveries,
        gaps,
        duplicates,
    }
}

/// Loses packets at random (never the first or last of a stream, so every loss is
/// a gap between two received packets) and derives the expected gaps.
fn apply_losses(generated: &[Packet], loss: f64, rng: &mut SplitMix) -> (Vec<Packet>, Vec<Gap>) {
    let mut delivered = Vec::new();
    let mut gaps = Vec::new();
    for stream in Stream::ALL {
        let ps: Vec<&Packet> = generated.iter().filter(|p| p.stream == stream).collect();
        let mut last_kept: Option<&Packet> = None;
        let mut lost_run = 0u64;
        for (i, p) in ps.iter().enumerate() {
            let edge = i == 0 || i + 1 == ps.len();
            if !edge && rng.chance(loss) {
                lost_run += 1;
                continue;
            }
            if lost_run > 0 {
                let a = last_kept.expect("first packet is kept");
                gaps.push(Gap {
                    apid: stream.apid(),
                    first_missing_seq: ((a.seq as u64 + 1) % SEQ_MODULUS) as u16,
                    n_missing: lost_run,
                    after_obt_ns: a.packet_obt_ns,
                    before_obt_ns: p.packet_obt_ns,
                });
                lost_run = 0;
            }
            last_kept = Some(p);
            delivered.push((*p).clone());
        }
    }
    gaps.sort_by_key(|g| (g.after_obt_ns, g.apid, g.first_missing_seq));
    (delivered, gaps)
}

/// Shuffles packets into deliveries and adds retransmissions (to another
/// delivery, or back to back in the same one).
fn spread(packets: Vec<Packet>, cfg: &DayConfig, rng: &mut SplitMix) -> (Vec<Vec<Packet>>, u64) {
    let n = cfg.deliveries.max(1);
    let mut out: Vec<Vec<Packet>> = vec![Vec::new(); n];
    let mut duplicates = 0;
    let end = cfg.start_obt_ns + cfg.duration_s * NS;
    for p in packets {
        let d = if cfg.contiguous {
            let into = p.packet_obt_ns.saturating_sub(cfg.start_obt_ns) as u128;
            let span = (end - cfg.start_obt_ns).max(1) as u128;
            ((into * n as u128 / span) as usize).min(n - 1)
        } else {
            rng.below(n as u64) as usize
        };
        if rng.chance(cfg.retransmit) {
            duplicates += 1;
            if rng.chance(0.3) {
                out[d].push(p.clone());
            } else {
                let other = rng.below(n as u64) as usize;
                out[other].push(p.clone());
            }
        }
        out[d].push(p);
    }
    for d in &mut out {
        // Keep back-to-back repeats together while mixing everything else.
        let mut groups: Vec<Vec<Packet>> = Vec::new();
        for p in d.drain(..) {
            match groups.last_mut() {
                Some(g) if g[0] == p => g.push(p),
                _ => groups.push(vec![p]),
            }
        }
        rng.shuffle(&mut groups);
        *d = groups.into_iter().flatten().collect();
    }
    (out, duplicates)
}

/// Writes one delivery folder (`deliveries/<id>/…` with `report.json`) into a
/// decoded folder.
pub fn write_delivery(decoded: &Path, id: u128, packets: &[Packet]) -> Result<(), ProductError> {
    let dir = decoded.join("deliveries").join(format!("{id:032x}"));
    std::fs::create_dir_all(&dir).map_err(|source| ProductError::Io {
        path: dir.clone(),
        source,
    })?;
    let mut w: Vec<&Window> = Vec::new();
    let mut a: Vec<&Attitude> = Vec::new();
    let mut h: Vec<&Hk> = Vec::new();
    for p in packets {
        match &p.payload {
            Payload::Window(v) => w.extend(v),
            Payload::Attitude(v) => a.extend(v),
            Payload::Hk(v) => h.extend(v),
        }
    }
    write_all(dir.join("window.mprod"), w)?;
    write_all(dir.join("attitude.mprod"), a)?;
    write_all(dir.join("hk.mprod"), h)?;
    write_all::<meridian_core::records::UnknownPacket>(dir.join("unknown_packet.mprod"), [])?;
    write_all::<meridian_core::records::Quarantine>(dir.join("quarantine.mprod"), [])?;
    write_file_atomic(dir.join("report.json"), b"{}\n")
}

/// A delivery id derived from a seed and an index (any 128-bit value will do).
pub fn delivery_id(seed: u64, index: usize) -> u128 {
    let mut r = SplitMix::new(seed ^ (index as u64).wrapping_mul(0x1234_5678_9abc_def1));
    ((r.next_u64() as u128) << 64) | r.next_u64() as u128
}

/// Writes every delivery of a day into a decoded folder; returns the ids used.
pub fn write_day(decoded: &Path, day: &Day, seed: u64) -> Result<Vec<u128>, ProductError> {
    let mut ids = Vec::new();
    for (i, d) in day.deliveries.iter().enumerate() {
        let id = delivery_id(seed, i);
        write_delivery(decoded, id, d)?;
        ids.push(id);
    }
    Ok(ids)
}
