//! Sequence-count continuity per APID, in packet-time order: `gap` records, the
//! per-hour completeness, and the time spans that keep chunks provisional.
//!
//! Consecutive packets (ordered by packet time, then sequence count) with counts
//! `a` then `b` have `(b − a − 1) mod 16384` packets missing between them: the
//! 14-bit wrap is resolved by ordering on time, never on the count. A hole of
//! 16384 packets or more cannot be told from the counts alone; when the time
//! between the two packets would allow at least one more whole wrap at the
//! fastest packet rate seen on that APID, the gap is still written with the
//! modular (smallest consistent) count, and is listed as *ambiguous* in the run
//! summary and the log so an operator can look at it.

use crate::manifest::HourCompleteness;
use crate::state::{PacketIndex, PacketKey, Variant};
use meridian_core::records::Gap;
use serde::Serialize;
use std::collections::BTreeMap;

/// Sequence counts are 14 bits.
pub const SEQ_MODULUS: u64 = 16384;
/// One OBT hour in ns.
pub const HOUR_NS: u64 = 3600 * 1_000_000_000;

/// A gap whose true size may exceed its modular count by whole wraps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AmbiguousGap {
    pub apid: u16,
    pub first_missing_seq: u16,
    pub n_missing: u64,
    pub after_obt_ns: u64,
    pub before_obt_ns: u64,
    /// Whole extra wraps that would fit at the fastest rate seen.
    pub max_extra_wraps: u64,
}

/// Everything continuity analysis yields for one APID.
#[derive(Debug, Default)]
pub struct Continuity {
    pub gaps: Vec<Gap>,
    pub ambiguous: Vec<AmbiguousGap>,
    /// Closed OBT spans where records may still be missing: around each gap and at
    /// both ends of the data (packets just before the first or after the last one
    /// received may still come). A gap's span runs from the earliest to the latest
    /// time of the two packets bounding it (their records included), widened by
    /// the largest distance between a packet's time and its records' times seen on
    /// the APID, because the lost packets' records may lie that far from them.
    pub open_spans: Vec<(u64, u64)>,
    pub hours: Vec<HourCompleteness>,
}

/// Time span of a packet and of all its variants' records.
fn span(key: &PacketKey, vs: &[Variant]) -> (u64, u64) {
    vs.iter()
        .fold((key.packet_obt_ns, key.packet_obt_ns), |(lo, hi), v| {
            (lo.min(v.min_obt_ns), hi.max(v.max_obt_ns))
        })
}

/// Analyses one APID's packets.
pub fn continuity(index: &PacketIndex, apid: u16) -> Continuity {
    let lo_key = PacketKey {
        apid,
        packet_obt_ns: 0,
        seq: 0,
    };
    let hi_key = PacketKey {
        apid,
        packet_obt_ns: u64::MAX,
        seq: u16::MAX,
    };
    let packets: Vec<(&PacketKey, &Vec<Variant>)> = index.range(lo_key..=hi_key).collect();
    let mut out = Continuity::default();
    let (Some(first), Some(last)) = (packets.first(), packets.last()) else {
        return out;
    };
    let (lead, lag) = packets.iter().fold((0, 0), |(lead, lag), (k, vs)| {
        let (lo, hi) = span(k, vs);
        (
            lead.max(k.packet_obt_ns - lo),
            lag.max(hi - k.packet_obt_ns),
        )
    });
    out.open_spans
        .push((0, span(first.0, first.1).1.saturating_add(lag)));
    out.open_spans
        .push((span(last.0, last.1).0.saturating_sub(lead), u64::MAX));
    let fastest = fastest_period_ns(&packets);
    let mut missing_per_hour: BTreeMap<u64, u64> = BTreeMap::new();
    for pair in packets.windows(2) {
        let (a, b) = (pair[0].0, pair[1].0);
        let n = (b.seq as u64 + 2 * SEQ_MODULUS - a.seq as u64 - 1) % SEQ_MODULUS;
        if n == 0 {
            continue;
        }
        let gap = Gap {
            apid,
            first_missing_seq: ((a.seq as u64 + 1) % SEQ_MODULUS) as u16,
            n_missing: n,
            after_obt_ns: a.packet_obt_ns,
            before_obt_ns: b.packet_obt_ns,
        };
        let (sa, sb) = (span(a, pair[0].1), span(b, pair[1].1));
        out.open_spans.push((
            sa.0.min(sb.0).saturating_sub(lead),
            sa.1.max(sb.1).saturating_add(lag),
        ));
        if let Some(extra) = extra_wraps(&gap, fastest) {
            out.ambiguous.push(AmbiguousGap {
                apid,
                first_missing_seq: gap.first_missing_seq,
                n_missing: n,
                after_obt_ns: gap.after_obt_ns,
                before_obt_ns: gap.before_obt_ns,
                max_extra_wraps: extra,
            });
        }
        spread_missing(&gap, &mut missing_per_hour);
        out.gaps.push(gap);
    }
    let mut received: BTreeMap<u64, u64> = BTreeMap::new();
    for (k, _) in &packets {
        *received.entry(k.packet_obt_ns / HOUR_NS).or_default() += 1;
    }
    let hours: std::collections::BTreeSet<u64> = received
        .keys()
        .chain(missing_per_hour.keys())
        .copied()
        .collect();
    for h in hours {
        let r = received.get(&h).copied().unwrap_or(0);
        let m = missing_per_hour.get(&h).copied().unwrap_or(0);
        out.hours.push(HourCompleteness {
            apid,
            hour_start_obt_ns: h * HOUR_NS,
            received: r,
            missing: m,
            completeness: r as f64 / (r + m) as f64,
        });
    }
    out
}

/// The shortest time between two packets whose counts follow each other.
fn fastest_period_ns(packets: &[(&PacketKey, &Vec<Variant>)]) -> Option<u64> {
    packets
        .windows(2)
        .filter(|p| (p[0].0.seq as u64 + 1) % SEQ_MODULUS == p[1].0.seq as u64)
        .map(|p| p[1].0.packet_obt_ns - p[0].0.packet_obt_ns)
        .filter(|&dt| dt > 0)
        .min()
}

/// Whole extra wraps that could hide in the gap at the fastest rate, if any.
fn extra_wraps(gap: &Gap, fastest: Option<u64>) -> Option<u64> {
    let period = fastest? as u128;
    let dt = (gap.before_obt_ns - gap.after_obt_ns) as u128;
    let could_fit = dt / period;
    let seen = gap.n_missing as u128 + 1;
    let extra = could_fit.saturating_sub(seen) / SEQ_MODULUS as u128;
    (extra > 0).then_some(extra as u64)
}

/// Assigns a gap's missing packets to hours, spread evenly over its time span.
fn spread_missing(gap: &Gap, per_hour: &mut BTreeMap<u64, u64>) {
    let (a, b, n) = (
        gap.after_obt_ns as u128,
        gap.before_obt_ns as u128,
        gap.n_missing as u128,
    );
    for i in 1..=n {
        let t = a + (b - a) * i / (n + 1);
        *per_hour.entry((t / HOUR_NS as u128) as u64).or_default() += 1;
    }
}

/// Merges closed spans into disjoint sorted ones.
pub fn merge_spans(mut spans: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    spans.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(spans.len());
    for (lo, hi) in spans {
        match out.last_mut() {
            Some(last) if lo <= last.1 => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// Whether the half-open interval `[start, end)` meets any of the disjoint sorted
/// closed spans.
pub fn touches(spans: &[(u64, u64)], start: u64, end: u64) -> bool {
    // First span whose end is at or after `start`.
    let i = spans.partition_point(|s| s.1 < start);
    spans.get(i).is_some_and(|s| s.0 < end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(apid: u16, packets: &[(u64, u16)]) -> PacketIndex {
        packets
            .iter()
            .map(|&(t, seq)| {
                let key = PacketKey {
                    apid,
                    packet_obt_ns: t,
                    seq,
                };
                let v = Variant {
                    hash: t,
                    first_delivery: 0,
                    records: 1,
                    min_obt_ns: t,
                    max_obt_ns: t,
                };
                (key, vec![v])
            })
            .collect()
    }

    #[test]
    fn gaps_follow_time_order_across_the_wrap() {
        let s = 1_000_000_000;
        // 16382, 16383, (0 and 1 missing), 2, 3, (4..=9 missing), 10
        let idx = index(
            0x102,
            &[
                (s, 16382),
                (2 * s, 16383),
                (5 * s, 2),
                (6 * s, 3),
                (13 * s, 10),
            ],
        );
        let c = continuity(&idx, 0x102);
        let got: Vec<(u16, u64, u64, u64)> = c
            .gaps
            .iter()
            .map(|g| {
                (
                    g.first_missing_seq,
                    g.n_missing,
                    g.after_obt_ns,
                    g.before_obt_ns,
                )
            })
            .collect();
        assert_eq!(got, vec![(0, 2, 2 * s, 5 * s), (4, 6, 6 * s, 13 * s)]);
        assert!(c.ambiguous.is_empty());
        assert_eq!(c.hours.len(), 1);
        assert_eq!((c.hours[0].received, c.hours[0].missing), (5, 8));
        assert!(continuity(&idx, 0x101).gaps.is_empty());
    }

    #[test]
    fn a_long_silence_that_could_hide_a_wrap_is_flagged() {
        let s = 1_000_000_000;
        // 1 packet/s, then a silence of 20000 s with counts 2 -> 5.
        let idx = index(0x201, &[(s, 1), (2 * s, 2), (20_002 * s, 5)]);
        let c = continuity(&idx, 0x201);
        assert_eq!(c.gaps.len(), 1);
        assert_eq!(c.gaps[0].n_missing, 2);
        assert_eq!(c.ambiguous.len(), 1);
        assert_eq!(c.ambiguous[0].max_extra_wraps, 1);
        // The two missing packets, spread over the silence, fall at about 6669 s
        // and 13335 s: hours 1 and 3.
        let missing: Vec<(u64, u64)> = c
            .hours
            .iter()
            .filter(|h| h.missing > 0)
            .map(|h| (h.hour_start_obt_ns / HOUR_NS, h.missing))
            .collect();
        assert_eq!(missing, vec![(1, 1), (3, 1)]);
    }

    #[test]
    fn span_queries() {
        let spans = merge_spans(vec![(10, 20), (15, 30), (50, 60)]);
        assert_eq!(spans, vec![(10, 30), (50, 60)]);
        assert!(touches(&spans, 0, 11));
        assert!(!touches(&spans, 0, 10));
        assert!(touches(&spans, 30, 40));
        assert!(!touches(&spans, 31, 50));
        assert!(touches(&spans, 60, 70));
        assert!(!touches(&spans, 61, 70));
    }
}
