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
        self.obt_ns
            .cmp(&o.obt_ns)
            .then_with(|| {
                (self.transit_id, self.strip, self.row, self.fov, self.ac).cmp(&(
                    o.transit_id,
                    o.strip,
                    o.row,
                    o.fov,
                    o.ac,
                ))
            })
            .then_with(|| self.onboard_mag.cmp(&o.onboard_mag))
            .then_with(|| self.samples.cmp(&o.samples))
            .then_with(|| self.packet_ref().cmp(&o.packet_ref()))
    }
    fn mem_size(&self) -> usize {
        std::mem::size_of::<Self>() + heap_block(self.samples.capacity() * 2)
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
