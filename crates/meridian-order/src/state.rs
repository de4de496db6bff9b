//! The ordered folder's private state: which deliveries were consumed and every
//! packet seen per APID, so a new run reads only new deliveries and the chunks
//! they touch.
//!
//! Stored as `state/<run:010>.state`, one per committed run: the manifest of run N
//! names its state implicitly, so a crash between writing a state and writing its
//! manifest leaves only an orphan that the next run overwrites.

use crate::error::OrderError;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use xxhash_rust::xxh3::xxh3_64;

/// A delivery folder name: 32 lowercase hex digits.
pub type DeliveryId = u128;

/// Parses a delivery folder name (exactly 32 lowercase hex digits).
pub fn parse_delivery_id(name: &str) -> Option<DeliveryId> {
    let ok = name.len() == 32 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if ok {
        u128::from_str_radix(name, 16).ok()
    } else {
        None
    }
}

/// The folder name of a delivery id.
pub fn delivery_name(id: DeliveryId) -> String {
    format!("{id:032x}")
}

/// What identifies a packet for duplicate detection: APID, packet time and
/// sequence count. Ordered by APID then time, so an APID's packets iterate in
/// time order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PacketKey {
    pub apid: u16,
    pub packet_obt_ns: u64,
    pub seq: u16,
}

/// One distinct content (by packet hash) delivered under a packet key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    pub hash: u64,
    /// Smallest id of the deliveries that carried it (order-independent).
    pub first_delivery: DeliveryId,
    pub records: u32,
    /// Time span of its records (the packet time when it has none).
    pub min_obt_ns: u64,
    pub max_obt_ns: u64,
}

/// Every packet seen, with its variants sorted by hash: more than one variant is a
/// conflict.
pub type PacketIndex = BTreeMap<PacketKey, Vec<Variant>>;

/// Everything a run needs from the runs before it (besides the manifest).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    pub consumed: BTreeSet<DeliveryId>,
    pub packets: PacketIndex,
}

const MAGIC: &[u8; 8] = b"MERIDORD";
const VERSION: u32 = 1;

/// Path of the state written by run `run`.
pub fn state_path(out: &Path, run: u64) -> PathBuf {
    out.join("state").join(format!("{run:010}.state"))
}

impl State {
    /// Approximate memory held by the packet index, charged to the `--mem` budget.
    pub fn mem_size(&self) -> usize {
        // B-tree slot (key and Vec, nodes about 70 % full) plus one heap block
        // of one variant per packet; sets of deliveries are small.
        self.packets.len() * 144 + self.consumed.len() * 48
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(32 + self.consumed.len() * 16 + self.packets.len() * 56);
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.extend_from_slice(&(self.consumed.len() as u64).to_le_bytes());
        for id in &self.consumed {
            b.extend_from_slice(&id.to_le_bytes());
        }
        b.extend_from_slice(&(self.packets.len() as u64).to_le_bytes());
        for (k, vs) in &self.packets {
            b.extend_from_slice(&k.apid.to_le_bytes());
            b.extend_from_slice(&k.seq.to_le_bytes());
            b.extend_from_slice(&k.packet_obt_ns.to_le_bytes());
            b.extend_from_slice(&(vs.len() as u32).to_le_bytes());
            for v in vs {
                b.extend_from_slice(&v.hash.to_le_bytes());
                b.extend_from_slice(&v.first_delivery.to_le_bytes());
                b.extend_from_slice(&v.records.to_le_bytes());
                b.extend_from_slice(&v.min_obt_ns.to_le_bytes());
                b.extend_from_slice(&v.max_obt_ns.to_le_bytes());
            }
        }
        let check = xxh3_64(&b);
        b.extend_from_slice(&check.to_le_bytes());
        b
    }

    pub fn decode(path: &Path, bytes: &[u8]) -> Result<State, OrderError> {
        let bad = |detail: &str| OrderError::State {
            path: path.to_owned(),
            detail: detail.to_owned(),
        };
        if bytes.len() < 20 || &bytes[..8] != MAGIC {
            return Err(bad("not a meridian-order state file"));
        }
        let (body, check) = bytes.split_at(bytes.len() - 8);
        if xxh3_64(body) != u64::from_le_bytes(check.try_into().expect("8 octets")) {
            return Err(bad("checksum mismatch"));
        }
        let mut r = Cursor { b: body, at: 8 };
        let truncated = || bad("truncated");
        if r.u32().ok_or_else(truncated)? != VERSION {
            return Err(bad("unsupported state version"));
        }
        let mut state = State::default();
        let n = r.u64().ok_or_else(truncated)?;
        for _ in 0..n {
            state.consumed.insert(r.u128().ok_or_else(truncated)?);
        }
        let n = r.u64().ok_or_else(truncated)?;
        for _ in 0..n {
            let apid = r.u16().ok_or_else(truncated)?;
            let seq = r.u16().ok_or_else(truncated)?;
            let packet_obt_ns = r.u64().ok_or_else(truncated)?;
            let nv = r.u32().ok_or_else(truncated)?;
            let mut vs = Vec::with_capacity(nv.min(16) as usize);
            for _ in 0..nv {
                vs.push(Variant {
                    hash: r.u64().ok_or_else(truncated)?,
                    first_delivery: r.u128().ok_or_else(truncated)?,
                    records: r.u32().ok_or_else(truncated)?,
                    min_obt_ns: r.u64().ok_or_else(truncated)?,
                    max_obt_ns: r.u64().ok_or_else(truncated)?,
                });
            }
            let key = PacketKey {
                apid,
                packet_obt_ns,
                seq,
            };
            state.packets.insert(key, vs);
        }
        if r.at != body.len() {
            return Err(bad("trailing octets"));
        }
        Ok(state)
    }

    /// Loads the state committed by run `run`.
    pub fn load(out: &Path, run: u64) -> Result<State, OrderError> {
        let path = state_path(out, run);
        let bytes = std::fs::read(&path).map_err(|source| OrderError::Io {
            path: path.clone(),
            source,
        })?;
        State::decode(&path, &bytes)
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let s = self.b.get(self.at..self.at.checked_add(N)?)?;
        self.at += N;
        s.try_into().ok()
    }
    fn u16(&mut self) -> Option<u16> {
        self.take().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }
    fn u128(&mut self) -> Option<u128> {
        self.take().map(u128::from_le_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_ids_are_32_lowercase_hex() {
        let name = "0123456789abcdef0123456789abcdef";
        let id = parse_delivery_id(name).unwrap();
        assert_eq!(delivery_name(id), name);
        assert!(parse_delivery_id("0123456789ABCDEF0123456789abcdef").is_none());
        assert!(parse_delivery_id("abc").is_none());
        assert!(parse_delivery_id(&format!("{name}0")).is_none());
    }

    #[test]
    fn state_round_trips_and_rejects_damage() {
        let mut s = State::default();
        s.consumed.insert(7);
        s.consumed.insert(u128::MAX);
        let key = PacketKey {
            apid: 0x101,
            packet_obt_ns: 123,
            seq: 16383,
        };
        let v = Variant {
            hash: 1,
            first_delivery: 7,
            records: 3,
            min_obt_ns: 100,
            max_obt_ns: 130,
        };
        s.packets
            .insert(key, vec![v.clone(), Variant { hash: 2, ..v }]);
        let bytes = s.encode();
        let p = Path::new("x.state");
        assert_eq!(State::decode(p, &bytes).unwrap(), s);
        for cut in [0, 10, bytes.len() - 1] {
            assert!(State::decode(p, &bytes[..cut]).is_err());
        }
        let mut flipped = bytes.clone();
        flipped[30] ^= 1;
        let err = State::decode(p, &flipped).unwrap_err().to_string();
        assert!(err.contains("x.state"), "{err}");
    }
}
