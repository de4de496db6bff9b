//! What the ordering stage needs to know about each telemetry-derived record kind:
//! its stream, its time, the packet that carried it, and a total order.

use crate::manifest::Stream;
use meridian_core::Record;
use meridian_core::records::{Attitude, Hk, PacketRef, Value, Window};
use std::cmp::Ordering;

/// A record of one of the ordered streams.
pub trait StreamRecord: Record + Clone + Sync {
    const STREAM: Stream;
    /// The time the record is ordered and chunked by.
    fn obt_ns(&self) -> u64;
    /// The packet that carried it.
    fn packet(&self) -> PacketRef;
    /// The documented total order inside a chunk: `obt_ns` first, then every other
    /// field in declaration order (floats by IEEE total order), then the carrying
    /// packet (`seq`, `packet_obt_ns`, `packet_hash`). Two records that compare
    /// equal have identical encodings, so the order of a chunk is fully determined.
    fn cmp_total(&self, other: &Self) -> Ordering;
    /// Approximate bytes the record occupies in memory, for the `--mem` budget.
    fn mem_size(&self) -> usize;

    /// The form the sorter holds the record in: fixed-size, with any
    /// variable-length part (window samples) in a shared [`Arena`], so a held
    /// record needs no heap block of its own. Windows are almost all of the
    /// data, and their samples' heap blocks a third of the memory they take.
    type Held: Clone + Send + Sync + 'static;
    /// Moves the record into its held form.
    fn hold(self, arena: &mut Arena) -> Self::Held;
    /// The record back from its held form.
    fn unhold(held: &Self::Held, arena: &[u16]) -> Self;
    /// Moves a held record from one arena to another.
    fn rehold(held: Self::Held, from: &[u16], to: &mut Arena) -> Self::Held;
    /// `obt_ns` of a held record.
    fn held_obt_ns(held: &Self::Held) -> u64;
    /// [`StreamRecord::cmp_total`] of the records, on their held forms.
    fn cmp_held(a: &Self::Held, b: &Self::Held, arena: &[u16]) -> Ordering;
    /// Bytes a held record takes, its arena part included.
    fn held_size(held: &Self::Held) -> usize;
}

/// Variable-length parts of held records, end to end.
pub type Arena = Vec<u16>;

/// Appends samples to an arena, growing it by a quarter rather than doubling
/// once large: unused capacity counts against the memory budget. (Large
/// buffers are grown in place by the allocator, so this copies little.)
fn arena_append(arena: &mut Arena, samples: &[u16]) -> u64 {
    if arena.capacity() - arena.len() < samples.len() {
        arena.reserve_exact((arena.capacity() / 4).max(samples.len()).max(1024));
    }
    let at = arena.len() as u64;
    arena.extend_from_slice(samples);
    at
}

/// A window as the sorter holds it: its samples are `arena[samples_at..][..k]`.
#[derive(Debug, Clone)]
pub struct HeldWindow {
    obt_ns: u64,
    transit_id: u64,
    packet_obt_ns: u64,
    packet_hash: u64,
    samples_at: u64,
    k: u32,
    ac: u16,
    onboard_mag: u16,
    seq: u16,
    strip: u8,
    row: u8,
    fov: u8,
}

impl HeldWindow {
    fn samples<'a>(&self, arena: &'a [u16]) -> &'a [u16] {
        let at = self.samples_at as usize;
        &arena[at..at + self.k as usize]
    }
}

/// Held form of the records that have no large variable-length part: themselves.
macro_rules! held_as_itself {
    () => {
        type Held = Self;
        fn hold(self, _arena: &mut Arena) -> Self {
            self
        }
        fn unhold(held: &Self, _arena: &[u16]) -> Self {
            held.clone()
        }
        fn rehold(held: Self, _from: &[u16], _to: &mut Arena) -> Self {
            held
        }
        fn held_obt_ns(held: &Self) -> u64 {
            held.obt_ns
        }
        fn cmp_held(a: &Self, b: &Self, _arena: &[u16]) -> Ordering {
            a.cmp_total(b)
        }
        fn held_size(held: &Self) -> usize {
            held.mem_size()
        }
    };
}

/// Bytes an allocation of `n` octets really takes (allocator header and rounding).
fn heap_block(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        (n + 16).next_multiple_of(16)
    }
}

impl StreamRecord for Window {
    const STREAM: Stream = Stream::Window;
    fn obt_ns(&self) -> u64 {
        self.obt_ns
    }
    fn packet(&self) -> PacketRef {
        self.packet_ref()
    }
    fn cmp_total(&self, o: &Self) -> Ordering {
        let head = |w: &Window| {
            (
                w.obt_ns,
                w.transit_id,
                w.strip,
                w.row,
                w.fov,
                w.ac,
                w.onboard_mag,
            )
        };
        head(self)
            .cmp(&head(o))
            .then_with(|| self.samples.cmp(&o.samples))
            .then_with(|| self.packet_ref().cmp(&o.packet_ref()))
    }
    fn mem_size(&self) -> usize {
        std::mem::size_of::<Self>() + heap_block(self.samples.capacity() * 2)
    }

    type Held = HeldWindow;
    fn hold(self, arena: &mut Arena) -> HeldWindow {
        let samples_at = arena_append(arena, &self.samples);
        HeldWindow {
            obt_ns: self.obt_ns,
            transit_id: self.transit_id,
            packet_obt_ns: self.packet_obt_ns,
            packet_hash: self.packet_hash,
            samples_at,
            k: u32::try_from(self.samples.len()).expect("fewer than 2^32 samples"),
            ac: self.ac,
            onboard_mag: self.onboard_mag,
            seq: self.seq,
            strip: self.strip,
            row: self.row,
            fov: self.fov,
        }
    }
    fn unhold(h: &HeldWindow, arena: &[u16]) -> Window {
        Window {
            transit_id: h.transit_id,
            strip: h.strip,
            row: h.row,
            fov: h.fov,
            ac: h.ac,
            obt_ns: h.obt_ns,
            onboard_mag: h.onboard_mag,
            samples: h.samples(arena).to_vec(),
            seq: h.seq,
            packet_obt_ns: h.packet_obt_ns,
            packet_hash: h.packet_hash,
        }
    }
    fn rehold(h: HeldWindow, from: &[u16], to: &mut Arena) -> HeldWindow {
        HeldWindow {
            samples_at: arena_append(to, h.samples(from)),
            ..h
        }
    }
    fn held_obt_ns(h: &HeldWindow) -> u64 {
        h.obt_ns
    }
    /// Field for field the order of [`Window::cmp_total`]; the samples are
    /// only looked at on ties of everything before them (rare).
    fn cmp_held(a: &HeldWindow, b: &HeldWindow, arena: &[u16]) -> Ordering {
        let head = |h: &HeldWindow| {
            (
                h.obt_ns,
                h.transit_id,
                h.strip,
                h.row,
                h.fov,
                h.ac,
                h.onboard_mag,
            )
        };
        let packet = |h: &HeldWindow| (h.seq, h.packet_obt_ns, h.packet_hash);
        head(a)
            .cmp(&head(b))
            .then_with(|| a.samples(arena).cmp(b.samples(arena)))
            .then_with(|| packet(a).cmp(&packet(b)))
    }
    fn held_size(h: &HeldWindow) -> usize {
        std::mem::size_of::<HeldWindow>() + 2 * h.k as usize
    }
}

impl StreamRecord for Attitude {
    const STREAM: Stream = Stream::Attitude;
    fn obt_ns(&self) -> u64 {
        self.obt_ns
    }
    fn packet(&self) -> PacketRef {
        self.packet_ref()
    }
    fn cmp_total(&self, o: &Self) -> Ordering {
        self.obt_ns
            .cmp(&o.obt_ns)
            .then_with(|| {
                self.q
                    .iter()
                    .zip(&o.q)
                    .map(|(a, b)| a.total_cmp(b))
                    .find(|c| c.is_ne())
                    .unwrap_or(Ordering::Equal)
            })
            .then_with(|| self.packet_ref().cmp(&o.packet_ref()))
    }
    fn mem_size(&self) -> usize {
        std::mem::size_of::<Self>()
    }
    held_as_itself!();
}

fn cmp_value(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.total_cmp(y),
        (Value::Number(_), Value::State(_)) => Ordering::Less,
        (Value::State(_), Value::Number(_)) => Ordering::Greater,
        (Value::State(x), Value::State(y)) => x.cmp(y),
    }
}

impl StreamRecord for Hk {
    const STREAM: Stream = Stream::Hk;
    fn obt_ns(&self) -> u64 {
        self.obt_ns
    }
    fn packet(&self) -> PacketRef {
        self.packet_ref()
    }
    fn cmp_total(&self, o: &Self) -> Ordering {
        self.obt_ns
            .cmp(&o.obt_ns)
            .then_with(|| self.sid.cmp(&o.sid))
            .then_with(|| self.param.cmp(&o.param))
            .then_with(|| self.raw.total_cmp(&o.raw))
            .then_with(|| cmp_value(&self.eng, &o.eng))
            .then_with(|| self.packet_ref().cmp(&o.packet_ref()))
    }
    fn mem_size(&self) -> usize {
        let eng = match &self.eng {
            Value::State(s) => s.capacity(),
            Value::Number(_) => 0,
        };
        std::mem::size_of::<Self>() + heap_block(self.param.capacity()) + heap_block(eng)
    }
    held_as_itself!();
}

/// Reduces the records of one run of consecutive records from the same packet to
/// their primitive root: a packet repeated back to back inside one delivery shows
/// up as its records repeated, and must count once. A packet whose own records
/// repeat exactly (never the case for real windows, samples or parameters) is
/// reduced the same way in every delivery, so the result stays deterministic.
/// Returns how many repeats were removed.
pub fn primitive_root<R: StreamRecord>(records: &mut Vec<R>) -> usize {
    let n = records.len();
    for period in 1..n {
        if n.is_multiple_of(period)
            && (period..n).all(|i| records[i].cmp_total(&records[i - period]).is_eq())
        {
            records.truncate(period);
            return n / period - 1;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn att(obt_ns: u64, x: f64) -> Attitude {
        Attitude {
            obt_ns,
            q: [x, 0.0, 0.0, 1.0],
            seq: 1,
            packet_obt_ns: 5,
            packet_hash: 9,
        }
    }

    #[test]
    fn primitive_root_removes_back_to_back_repeats_only() {
        let mut v = vec![att(1, 0.1), att(2, 0.2), att(1, 0.1), att(2, 0.2)];
        assert_eq!(primitive_root(&mut v), 1);
        assert_eq!(v, vec![att(1, 0.1), att(2, 0.2)]);
        let mut w = vec![att(1, 0.1), att(2, 0.2), att(3, 0.1)];
        assert_eq!(primitive_root(&mut w), 0);
        assert_eq!(w.len(), 3);
        let mut nan = vec![att(1, f64::NAN), att(1, f64::NAN)];
        assert_eq!(primitive_root(&mut nan), 1);
        assert_eq!(nan.len(), 1, "NaN compares equal to itself by total order");
    }

    fn window(rng: &mut crate::synth::SplitMix) -> Window {
        // Few distinct values per field, so ties reach every later field.
        let mut pick = |n: u64| rng.below(n);
        Window {
            transit_id: pick(2),
            strip: pick(2) as u8,
            row: pick(2) as u8,
            fov: pick(2) as u8,
            ac: pick(2) as u16,
            obt_ns: pick(3),
            onboard_mag: pick(2) as u16,
            samples: (0..pick(4)).map(|_| pick(2) as u16).collect(),
            seq: pick(2) as u16,
            packet_obt_ns: pick(2),
            packet_hash: pick(2),
        }
    }

    /// The held form gives back the same window and sorts it the same way.
    #[test]
    fn held_windows_round_trip_and_keep_the_total_order() {
        let mut rng = crate::synth::SplitMix::new(7);
        let windows: Vec<Window> = (0..400).map(|_| window(&mut rng)).collect();
        let mut arena = Arena::new();
        let held: Vec<HeldWindow> = windows
            .iter()
            .cloned()
            .map(|w| w.hold(&mut arena))
            .collect();
        // Pairs equal up to the samples: the comparisons that reach the arena.
        let mut reach_samples = 0;
        for (i, (a, ha)) in windows.iter().zip(&held).enumerate() {
            assert_eq!(&Window::unhold(ha, &arena), a);
            let mut other = vec![7u16; 3];
            let moved = Window::rehold(ha.clone(), &arena, &mut other);
            assert_eq!(&Window::unhold(&moved, &other), a, "moved to another arena");
            assert_eq!(Window::held_obt_ns(ha), a.obt_ns);
            for (b, hb) in windows.iter().zip(&held).skip(i + 1) {
                assert_eq!(
                    Window::cmp_held(ha, hb, &arena),
                    a.cmp_total(b),
                    "{a:?} vs {b:?}"
                );
                let head = |w: &Window| (w.obt_ns, w.transit_id, w.strip, w.row, w.fov, w.ac);
                reach_samples += usize::from(head(a) == head(b) && a.onboard_mag == b.onboard_mag);
            }
        }
        assert!(
            reach_samples > 100,
            "{reach_samples} comparisons reach the samples"
        );
    }

    #[test]
    fn order_is_time_then_fields_then_packet() {
        let a = att(1, 0.5);
        let b = att(2, 0.1);
        assert!(a.cmp_total(&b).is_lt());
        let mut c = att(1, 0.5);
        c.packet_hash = 10;
        assert!(a.cmp_total(&c).is_lt());
        assert!(a.cmp_total(&a.clone()).is_eq());
    }
}
