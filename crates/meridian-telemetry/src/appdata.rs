//! Application data of ICD §4: transit windows (APID 0x101, 200/1), attitude
//! (0x102, 200/2) and housekeeping (0x201, 3/25), encoded and decoded.
//!
//! Decoders read straight from the packet bytes and validate every count and
//! range, so malformed data of a CRC-valid packet is an error, never a panic.

use crate::mission_db::{MissionDb, Param, Structure};
use meridian_core::records::{Attitude, Hk, PacketRef, Window};

/// PUS service/subtype of each application data kind (ICD §4).
pub mod service {
    pub const WINDOWS: (u8, u8) = (200, 1);
    pub const ATTITUDE: (u8, u8) = (200, 2);
    pub const HOUSEKEEPING: (u8, u8) = (3, 25);
}

/// Octets of a window record before its samples.
pub const WINDOW_FIXED_LEN: usize = 8 + 1 + 1 + 1 + 2 + 8 + 2 + 1;
/// Octets of one attitude record.
pub const ATTITUDE_RECORD_LEN: usize = 8 + 4 * 8;
/// Largest number of samples in a window.
pub const MAX_SAMPLES: u8 = 32;

/// Malformed application data in a packet whose CRC was valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppDataError {
    #[error("application data ends at octet {at} inside {what}")]
    Short { what: &'static str, at: usize },
    #[error("{extra} octets after the last record")]
    Trailing { extra: usize },
    #[error("record {index}: {field} = {value} is out of range")]
    OutOfRange {
        index: usize,
        field: &'static str,
        value: u64,
    },
    #[error("housekeeping structure ID {0} is not in the mission database")]
    UnknownSid(u16),
}

/// Big-endian cursor over application data that reports where it ran short.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], AppDataError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or(AppDataError::Short {
            what,
            at: self.data.len(),
        })?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, AppDataError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, AppDataError> {
        Ok(u16::from_be_bytes(
            self.take(2, what)?.try_into().expect("2 octets"),
        ))
    }
    fn finish(self) -> Result<(), AppDataError> {
        match self.data.len() - self.pos {
            0 => Ok(()),
            extra => Err(AppDataError::Trailing { extra }),
        }
    }
}

fn check_range(
    index: usize,
    field: &'static str,
    value: u64,
    ok: bool,
) -> Result<(), AppDataError> {
    if ok {
        Ok(())
    } else {
        Err(AppDataError::OutOfRange {
            index,
            field,
            value,
        })
    }
}

/// Appends the application data of a transit-window packet holding `windows`
/// (their packet fields are ignored).
pub fn encode_windows(out: &mut Vec<u8>, windows: &[Window]) {
    out.extend_from_slice(&(windows.len() as u16).to_be_bytes());
    for w in windows {
        out.extend_from_slice(&w.transit_id.to_be_bytes());
        out.extend_from_slice(&[w.strip, w.row, w.fov]);
        out.extend_from_slice(&w.ac.to_be_bytes());
        out.extend_from_slice(&w.obt_ns.to_be_bytes());
        out.extend_from_slice(&w.onboard_mag.to_be_bytes());
        out.push(w.samples.len() as u8);
        for s in &w.samples {
            out.extend_from_slice(&s.to_be_bytes());
        }
    }
}

/// Decodes transit windows, passing each to `emit` with the packet's identity.
/// Checks ICD §4.1 ranges: strip 0..8, row 1..7, fov 0..1, ac 0..1965, k 1..32.
/// The whole packet is validated before anything is emitted.
pub fn decode_windows(
    data: &[u8],
    packet: PacketRef,
    emit: impl FnMut(Window),
) -> Result<(), AppDataError> {
    WindowsView::parse(data)?
        .iter()
        .map(|w| w.to_record(packet))
        .for_each(emit);
    Ok(())
}

/// A validated transit-window packet, read in place.
#[derive(Debug, Clone, Copy)]
pub struct WindowsView<'a> {
    /// The records, after the count.
    records: &'a [u8],
    count: usize,
}

impl<'a> WindowsView<'a> {
    /// Validates the whole application data (counts, lengths, ICD §4.1 ranges).
    pub fn parse(data: &'a [u8]) -> Result<Self, AppDataError> {
        let mut r = Reader { data, pos: 0 };
        let count = r.u16("window count")? as usize;
        for index in 0..count {
            r.take(8, "transit_id")?;
            let strip = r.u8("strip")?;
            let row = r.u8("row")?;
            let fov = r.u8("fov")?;
            let ac = r.u16("ac")?;
            r.take(8, "obt_ns")?;
            r.take(2, "onboard_mag")?;
            let k = r.u8("k")?;
            check_range(index, "strip", strip as u64, strip <= 8)?;
            check_range(index, "row", row as u64, (1..=7).contains(&row))?;
            check_range(index, "fov", fov as u64, fov <= 1)?;
            check_range(
                index,
                "ac",
                ac as u64,
                ac <= meridian_core::instrument::AC_MAX,
            )?;
            check_range(index, "k", k as u64, (1..=MAX_SAMPLES).contains(&k))?;
            r.take(2 * k as usize, "samples")?;
        }
        r.finish()?;
        Ok(Self {
            records: &data[2..],
            count,
        })
    }

    /// Number of windows.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The windows in packet order.
    pub fn iter(&self) -> impl Iterator<Item = WindowView<'a>> + 'a {
        let mut rest = self.records;
        (0..self.count).map(move |_| {
            let k = rest[WINDOW_FIXED_LEN - 1] as usize;
            let (w, tail) = rest.split_at(WINDOW_FIXED_LEN + 2 * k);
            rest = tail;
            WindowView { bytes: w }
        })
    }
}

/// One validated window record, read in place.
#[derive(Debug, Clone, Copy)]
pub struct WindowView<'a> {
    bytes: &'a [u8],
}

impl<'a> WindowView<'a> {
    fn be<const N: usize>(&self, at: usize) -> [u8; N] {
        self.bytes[at..at + N].try_into().expect("validated length")
    }
    pub fn transit_id(&self) -> u64 {
        u64::from_be_bytes(self.be(0))
    }
    pub fn strip(&self) -> u8 {
        self.bytes[8]
    }
    pub fn row(&self) -> u8 {
        self.bytes[9]
    }
    pub fn fov(&self) -> u8 {
        self.bytes[10]
    }
    pub fn ac(&self) -> u16 {
        u16::from_be_bytes(self.be(11))
    }
    pub fn obt_ns(&self) -> u64 {
        u64::from_be_bytes(self.be(13))
    }
    pub fn onboard_mag(&self) -> u16 {
        u16::from_be_bytes(self.be(21))
    }
    /// The samples, big-endian u16 each.
    pub fn samples(&self) -> impl ExactSizeIterator<Item = u16> + 'a {
        self.bytes[WINDOW_FIXED_LEN..]
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
    }

    /// The samples as a vector (allocated once, not zeroed: `calloc` showed up
    /// in profiles of the parallel path).
    pub fn samples_vec(&self) -> Vec<u16> {
        let raw = &self.bytes[WINDOW_FIXED_LEN..];
        let mut out = Vec::with_capacity(raw.len() / 2);
        out.extend(
            raw.chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]])),
        );
        out
    }

    /// The ICD §9 `window` record, tagged with its packet.
    pub fn to_record(&self, packet: PacketRef) -> Window {
        Window {
            transit_id: self.transit_id(),
            strip: self.strip(),
            row: self.row(),
            fov: self.fov(),
            ac: self.ac(),
            obt_ns: self.obt_ns(),
            onboard_mag: self.onboard_mag(),
            samples: self.samples_vec(),
            seq: packet.seq,
            packet_obt_ns: packet.packet_obt_ns,
            packet_hash: packet.packet_hash,
        }
    }
}

/// Appends the application data of an attitude packet.
pub fn encode_attitude(out: &mut Vec<u8>, samples: &[(u64, [f64; 4])]) {
    out.extend_from_slice(&(samples.len() as u16).to_be_bytes());
    for (t, q) in samples {
        out.extend_from_slice(&t.to_be_bytes());
        for c in q {
            out.extend_from_slice(&c.to_bits().to_be_bytes());
        }
    }
}

/// Decodes attitude samples (nothing is emitted from a malformed packet).
pub fn decode_attitude(
    data: &[u8],
    packet: PacketRef,
    mut emit: impl FnMut(Attitude),
) -> Result<(), AppDataError> {
    for (obt_ns, q) in AttitudeView::parse(data)?.iter() {
        emit(Attitude {
            obt_ns,
            q,
            seq: packet.seq,
            packet_obt_ns: packet.packet_obt_ns,
            packet_hash: packet.packet_hash,
        });
    }
    Ok(())
}

/// A validated attitude packet, read in place.
#[derive(Debug, Clone, Copy)]
pub struct AttitudeView<'a> {
    records: &'a [u8],
}

impl<'a> AttitudeView<'a> {
    /// Checks that the count matches the length.
    pub fn parse(data: &'a [u8]) -> Result<Self, AppDataError> {
        let mut r = Reader { data, pos: 0 };
        let n = r.u16("attitude count")? as usize;
        r.take(n * ATTITUDE_RECORD_LEN, "attitude records")?;
        r.finish()?;
        Ok(Self {
            records: &data[2..],
        })
    }

    pub fn len(&self) -> usize {
        self.records.len() / ATTITUDE_RECORD_LEN
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// `(obt_ns, [x, y, z, w])` samples in packet order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, [f64; 4])> + 'a {
        self.records.chunks_exact(ATTITUDE_RECORD_LEN).map(|c| {
            let word = |i: usize| u64::from_be_bytes(c[8 * i..8 * i + 8].try_into().expect("8"));
            let f = |i: usize| f64::from_bits(word(i));
            (word(0), [f(1), f(2), f(3), f(4)])
        })
    }
}

/// Appends a housekeeping report: the structure ID then each parameter's raw
/// value in database order and type (values are converted with `as`, so the
/// caller chooses representable values).
pub fn encode_hk(out: &mut Vec<u8>, structure: &Structure, raw_values: &[f64]) {
    out.extend_from_slice(&structure.sid.to_be_bytes());
    for (param, &raw) in structure.params.iter().zip(raw_values) {
        param.ptype.encode(raw, out);
    }
}

/// Decodes a housekeeping report into calibrated samples at the packet time.
pub fn decode_hk(
    db: &MissionDb,
    data: &[u8],
    packet: PacketRef,
    emit: impl FnMut(Hk),
) -> Result<(), AppDataError> {
    HkView::parse(db, data)?.records(packet).for_each(emit);
    Ok(())
}

/// A validated housekeeping report and its structure, read in place.
#[derive(Debug, Clone, Copy)]
pub struct HkView<'a> {
    structure: &'a Structure,
    values: &'a [u8],
}

impl<'a> HkView<'a> {
    /// Finds the structure and checks the length against it.
    pub fn parse(db: &'a MissionDb, data: &'a [u8]) -> Result<Self, AppDataError> {
        let mut r = Reader { data, pos: 0 };
        let sid = r.u16("structure ID")?;
        let structure = db.structure(sid).ok_or(AppDataError::UnknownSid(sid))?;
        let size = structure.params.iter().map(|p| p.ptype.size()).sum();
        r.take(size, "housekeeping parameters")?;
        r.finish()?;
        Ok(Self {
            structure,
            values: &data[2..],
        })
    }

    pub fn structure(&self) -> &'a Structure {
        self.structure
    }

    /// Each parameter with its raw value, in packet order.
    pub fn raw_values(&self) -> impl Iterator<Item = (&'a Param, f64)> + 'a {
        let mut rest = self.values;
        self.structure.params.iter().map(move |p| {
            let (v, tail) = rest.split_at(p.ptype.size());
            rest = tail;
            (p, p.ptype.decode(v))
        })
    }

    /// Calibrated `hk` records at the packet time.
    pub fn records(&self, packet: PacketRef) -> impl Iterator<Item = Hk> + 'a {
        let sid = self.structure.sid;
        self.raw_values().map(move |(param, raw)| Hk {
            obt_ns: packet.packet_obt_ns,
            sid,
            param: param.name.clone(),
            raw,
            eng: param.calibration.apply(raw),
            seq: packet.seq,
            packet_obt_ns: packet.packet_obt_ns,
            packet_hash: packet.packet_hash,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pref() -> PacketRef {
        PacketRef {
            seq: 5,
            packet_obt_ns: 77,
            packet_hash: 1,
        }
    }

    fn window_strategy() -> impl Strategy<Value = Window> {
        (
            any::<u64>(),
            0u8..=8,
            1u8..=7,
            0u8..=1,
            0u16..=1965,
            any::<u64>(),
            any::<u16>(),
            proptest::collection::vec(any::<u16>(), 1..=32),
        )
            .prop_map(
                |(transit_id, strip, row, fov, ac, obt_ns, onboard_mag, samples)| Window {
                    transit_id,
                    strip,
                    row,
                    fov,
                    ac,
                    obt_ns,
                    onboard_mag,
                    samples,
                    seq: 5,
                    packet_obt_ns: 77,
                    packet_hash: 1,
                },
            )
    }

    proptest! {
        #[test]
        fn windows_decode_what_was_encoded(ws in proptest::collection::vec(window_strategy(), 0..20)) {
            let mut data = Vec::new();
            encode_windows(&mut data, &ws);
            let mut back = Vec::new();
            decode_windows(&data, pref(), |w| back.push(w)).unwrap();
            prop_assert_eq!(back, ws);
        }

        #[test]
        fn attitude_decodes_what_was_encoded(s in proptest::collection::vec((any::<u64>(), any::<[u64; 4]>()), 0..20)) {
            let samples: Vec<(u64, [f64; 4])> = s.iter().map(|(t, q)| (*t, q.map(f64::from_bits))).collect();
            let mut data = Vec::new();
            encode_attitude(&mut data, &samples);
            let mut back = Vec::new();
            decode_attitude(&data, pref(), |a| back.push(a)).unwrap();
            prop_assert_eq!(back.len(), samples.len());
            for (a, (t, q)) in back.iter().zip(&samples) {
                prop_assert_eq!(a.obt_ns, *t);
                prop_assert_eq!(a.q.map(f64::to_bits), q.map(f64::to_bits));
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = decode_windows(&data, pref(), |_| {});
            let _ = decode_attitude(&data, pref(), |_| {});
        }
    }

    #[test]
    fn out_of_range_fields_are_rejected_whole() {
        let mut w = Window {
            transit_id: 1,
            strip: 9,
            row: 1,
            fov: 0,
            ac: 0,
            obt_ns: 0,
            onboard_mag: 0,
            samples: vec![1],
            seq: 0,
            packet_obt_ns: 0,
            packet_hash: 0,
        };
        let mut data = Vec::new();
        encode_windows(&mut data, &[w.clone()]);
        let err =
            decode_windows(&data, pref(), |_| panic!("emitted from a bad packet")).unwrap_err();
        assert_eq!(
            err,
            AppDataError::OutOfRange {
                index: 0,
                field: "strip",
                value: 9
            }
        );
        w.strip = 0;
        data.clear();
        encode_windows(&mut data, &[w]);
        data.push(0);
        assert_eq!(
            decode_windows(&data, pref(), |_| {}).unwrap_err(),
            AppDataError::Trailing { extra: 1 }
        );
    }
}
