//! Zero-copy packet reader (ICD §2, §3, §9): splits a delivery's bytes into
//! CRC-valid packets, idle packets and quarantined spans, resynchronising after
//! garbage or corruption, without copying or panicking on any input.
//!
//! # Rules
//!
//! * A **packet** is a plausible primary header (version 0, telemetry, unsegmented,
//!   secondary header, at least header + secondary header + CRC long) whose whole
//!   length lies in the data and whose CRC-16 matches. Only packets are sync
//!   points: after a failure the reader resumes at the next offset holding one,
//!   skipping candidates that wholly contain another packet (a chance CRC match
//!   in garbage must not swallow intact packets; see `contains_packet`).
//! * An **idle packet** (APID 0x7FF, no CRC) is recognised only at a *boundary*:
//!   the start of the delivery or the end of the previous packet (ICD §9), and
//!   only if no sync point starts inside it (its length has no CRC to vouch for
//!   it, and it must never swallow an intact packet).
//! * Everything else is **quarantined**, with a reason:
//!   - `crc_mismatch`: a plausible header at a boundary whose declared packet lies
//!     wholly before the next sync point but whose CRC fails. The span is the
//!     declared packet; the reader then treats its declared end as a boundary.
//!   - `truncated_packet`: a plausible header (TM or idle) at a boundary whose
//!     declared length runs past the next sync point or the end of the data (also
//!     a partial header at the very end, at a boundary).
//!   - `garbage`: anything else, up to the next sync point.
//! * One quarantine span never exceeds [`MAX_QUARANTINE_SPAN`] octets: a longer run
//!   without a sync point is cut into pieces at fixed distances from its start, so
//!   memory stays bounded and results do not depend on how the data was chunked.
//!
//! Every decision needs at most `MAX_QUARANTINE_SPAN + MAX_PACKET_LEN` octets of
//! look-ahead, so the same rules drive both the whole-slice [`PacketReader`] and
//! the incremental [`Scanner`] used for streamed (decompressed) input; both give
//! identical items for identical bytes, whatever the chunking.

use crate::appdata::{AppDataError, AttitudeView, HkView, WindowsView, service};
use crate::crc::crc16;
use crate::mission_db::MissionDb;
use crate::packet::apid;
use crate::packet::{
    CRC_LEN, MAX_PACKET_LEN, PRIMARY_HEADER_LEN, PrimaryHeader, SECONDARY_HEADER_LEN,
    SecondaryHeader,
};
use std::fmt;

/// Largest quarantine span the reader emits; longer runs are split.
pub const MAX_QUARANTINE_SPAN: usize = 1 << 20;

/// Look-ahead the scanner may need beyond its position to decide one item.
pub const MAX_LOOKAHEAD: usize = MAX_QUARANTINE_SPAN + MAX_PACKET_LEN;

/// Why a span of bytes was quarantined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SpanReason {
    Garbage,
    CrcMismatch,
    TruncatedPacket,
}

impl SpanReason {
    /// The reason as written in `quarantine` records.
    pub fn as_str(self) -> &'static str {
        match self {
            SpanReason::Garbage => "garbage",
            SpanReason::CrcMismatch => "crc_mismatch",
            SpanReason::TruncatedPacket => "truncated_packet",
        }
    }
}

impl fmt::Display for SpanReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A CRC-valid telemetry packet, borrowed from the delivery's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Octet offset of the packet in the (decompressed) delivery.
    pub offset: u64,
    pub primary: PrimaryHeader,
    pub secondary: SecondaryHeader,
    /// The whole packet, headers and CRC included.
    pub bytes: &'a [u8],
}

impl<'a> Packet<'a> {
    /// The application data (between the secondary header and the CRC).
    pub fn app_data(&self) -> &'a [u8] {
        &self.bytes[PRIMARY_HEADER_LEN + SECONDARY_HEADER_LEN..self.bytes.len() - CRC_LEN]
    }

    /// xxh3-64 of the whole packet: its identity across retransmissions.
    pub fn hash(&self) -> u64 {
        xxhash_rust::xxh3::xxh3_64(self.bytes)
    }

    /// The typed application data of ICD §4, validated, read in place; or
    /// [`Content::Unknown`] for an APID/service the ICD does not list.
    pub fn content<'c>(&self, db: &'c MissionDb) -> Result<Content<'c>, AppDataError>
    where
        'a: 'c,
    {
        let kind = (self.secondary.service, self.secondary.subtype);
        let data = self.app_data();
        Ok(match self.primary.apid {
            apid::TRANSIT_WINDOWS if kind == service::WINDOWS => {
                Content::Windows(WindowsView::parse(data)?)
            }
            apid::ATTITUDE if kind == service::ATTITUDE => {
                Content::Attitude(AttitudeView::parse(data)?)
            }
            apid::HOUSEKEEPING if kind == service::HOUSEKEEPING => {
                Content::Housekeeping(HkView::parse(db, data)?)
            }
            _ => Content::Unknown,
        })
    }
}

/// Typed application data of a packet (ICD §4), borrowed from the packet and
/// (for housekeeping) the mission database.
#[derive(Debug, Clone, Copy)]
pub enum Content<'c> {
    Windows(WindowsView<'c>),
    Attitude(AttitudeView<'c>),
    Housekeeping(HkView<'c>),
    /// APID or service not in ICD §4: kept undecoded.
    Unknown,
}

/// Bytes that are not part of any packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span<'a> {
    pub offset: u64,
    pub reason: SpanReason,
    pub bytes: &'a [u8],
}

/// One thing the reader found, in stream order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item<'a> {
    Packet(Packet<'a>),
    /// An idle packet: its offset and length (its content carries nothing).
    Idle {
        offset: u64,
        len: usize,
    },
    Quarantine(Span<'a>),
}

impl Item<'_> {
    /// Offset of the item in the delivery.
    pub fn offset(&self) -> u64 {
        match self {
            Item::Packet(p) => p.offset,
            Item::Idle { offset, .. } => *offset,
            Item::Quarantine(s) => s.offset,
        }
    }

    /// Octets the item covers.
    pub fn len(&self) -> usize {
        match self {
            Item::Packet(p) => p.bytes.len(),
            Item::Idle { len, .. } => *len,
            Item::Quarantine(s) => s.bytes.len(),
        }
    }

    /// Never true: every item covers at least one octet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Outcome of one [`Scanner::step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'a> {
    Item(Item<'a>),
    /// The decision needs octets beyond the buffer; call again with more.
    NeedMore,
    /// All data consumed (only with `eof`).
    End,
}

/// Where a search for the next sync point ended.
enum Sync {
    /// A CRC-valid packet starts here (buffer index).
    Found(usize),
    /// No sync point before this buffer index (all candidates decided).
    None(usize),
    NeedMore,
}

/// Incremental reader state: feed it a buffer that starts at absolute offset
/// `base` and holds everything from the scanner's position on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scanner {
    /// Absolute offset of the next undecided octet.
    pos: u64,
    /// Whether `pos` is where the previous packet ended (or the data starts).
    at_boundary: bool,
    /// A sync point already found ahead of `pos` (absolute), to avoid searching twice.
    known_sync: Option<u64>,
}

impl Default for Scanner {
    fn default() -> Self {
        Self::new(0)
    }
}

impl Scanner {
    /// A scanner at absolute offset `pos`, which must be a boundary (the start of
    /// the data or a known packet start).
    pub fn new(pos: u64) -> Self {
        Self {
            pos,
            at_boundary: true,
            known_sync: None,
        }
    }

    /// Absolute offset of the next undecided octet.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Decides the next item. `buf` holds the data from absolute offset `base`
    /// (at most the scanner position) on; `eof` says no data follows `buf`.
    ///
    /// # Panics
    /// If `base` is after the scanner's position or `buf` ends before it.
    pub fn step<'a>(&mut self, buf: &'a [u8], base: u64, eof: bool) -> Step<'a> {
        assert!(base <= self.pos, "buffer starts after the scanner position");
        let start = usize::try_from(self.pos - base).expect("position within buffer");
        assert!(
            start <= buf.len(),
            "buffer ends before the scanner position"
        );
        let rest = &buf[start..];
        if rest.is_empty() {
            return if eof { Step::End } else { Step::NeedMore };
        }
        if rest.len() < PRIMARY_HEADER_LEN && !eof {
            return Step::NeedMore;
        }
        let header = header_at(rest, 0);
        if let Some(h) = header.filter(PrimaryHeader::is_plausible) {
            let len = h.packet_len();
            if len > rest.len() && !eof {
                return Step::NeedMore;
            }
            if len <= rest.len() {
                if h.is_idle() && self.at_boundary {
                    // An idle packet has no CRC to vouch for its length: it must
                    // not swallow a CRC-valid packet that starts inside it.
                    match find_sync(rest, 1, len, eof) {
                        Sync::NeedMore => return Step::NeedMore,
                        Sync::Found(q) => self.known_sync = Some(self.pos + q as u64),
                        Sync::None(_) => {
                            return self.emit(Item::Idle {
                                offset: self.pos,
                                len,
                            });
                        }
                    }
                }
                if !h.is_idle() && crc_ok(&rest[..len]) {
                    return self.emit(Item::Packet(packet(self.pos, h, &rest[..len])));
                }
            }
        }
        self.failure(rest, header, eof)
    }

    fn emit<'a>(&mut self, item: Item<'a>) -> Step<'a> {
        self.pos += item.len() as u64;
        self.at_boundary = !matches!(
            item,
            Item::Quarantine(Span {
                reason: SpanReason::Garbage | SpanReason::TruncatedPacket,
                ..
            })
        );
        Step::Item(item)
    }

    /// Quarantines from the scanner position (`rest[0]`) up to the next sync point.
    fn failure<'a>(
        &mut self,
        rest: &'a [u8],
        header: Option<PrimaryHeader>,
        eof: bool,
    ) -> Step<'a> {
        let limit = MAX_QUARANTINE_SPAN.min(rest.len());
        let sync = match self.known_sync.filter(|&s| s > self.pos) {
            Some(s) if s - self.pos <= limit as u64 => Sync::Found((s - self.pos) as usize),
            _ => find_sync(rest, 1, MAX_QUARANTINE_SPAN, eof),
        };
        let stop = match sync {
            Sync::NeedMore => return Step::NeedMore,
            Sync::Found(s) => {
                self.known_sync = Some(self.pos + s as u64);
                s
            }
            Sync::None(end) => end,
        };
        let declared = header
            .filter(|h| self.at_boundary && h.is_plausible())
            .map(|h| (h.is_idle(), h.packet_len()));
        let (len, reason) = match declared {
            // Only a TM packet whose whole declared length is present had its CRC checked.
            Some((false, len)) if len <= stop => (len, SpanReason::CrcMismatch),
            Some(_) => (stop, SpanReason::TruncatedPacket),
            None if self.at_boundary && header.is_none() => (stop, SpanReason::TruncatedPacket),
            None => (stop, SpanReason::Garbage),
        };
        self.emit(Item::Quarantine(Span {
            offset: self.pos,
            reason,
            bytes: &rest[..len],
        }))
    }
}

/// The primary header at `at`, if six octets are there.
fn header_at(buf: &[u8], at: usize) -> Option<PrimaryHeader> {
    let b: &[u8; PRIMARY_HEADER_LEN] = buf.get(at..at + PRIMARY_HEADER_LEN)?.try_into().ok()?;
    Some(PrimaryHeader::parse(b))
}

fn crc_ok(packet: &[u8]) -> bool {
    let (body, crc) = packet.split_at(packet.len() - CRC_LEN);
    crc16(body).to_be_bytes() == crc
}

fn packet(offset: u64, primary: PrimaryHeader, bytes: &[u8]) -> Packet<'_> {
    let sec: &[u8; SECONDARY_HEADER_LEN] = bytes
        [PRIMARY_HEADER_LEN..PRIMARY_HEADER_LEN + SECONDARY_HEADER_LEN]
        .try_into()
        .expect("a plausible TM packet holds a secondary header");
    Packet {
        offset,
        primary,
        secondary: SecondaryHeader::parse(sec),
        bytes,
    }
}

/// Cheap pre-filter on the first two octets of a header: version 0, telemetry,
/// secondary header flag set. One comparison rejects most offsets of garbage.
#[inline]
fn may_start_tm(b0: u8) -> bool {
    b0 & 0xF8 == 0x08
}

/// True when a CRC-valid TM packet lies wholly inside `packet`, after its start.
///
/// A sync point found by searching (after garbage or a failed packet) must not
/// contain one: garbage passes a plausible-header and CRC-16 check by chance
/// about once in 65 536 plausible headers, and such a false packet, up to 64 KiB
/// long, would swallow the intact packets after it. A genuine packet whose data
/// holds a whole valid packet is rare; after garbage it is quarantined and its
/// inner packet decoded, its bytes kept either way.
fn contains_packet(packet: &[u8]) -> bool {
    (1..packet.len()).any(|q| {
        may_start_tm(packet[q])
            && header_at(packet, q)
                .filter(|h| h.is_plausible() && !h.is_idle())
                .and_then(|h| packet.get(q..q + h.packet_len()))
                .is_some_and(crc_ok)
    })
}

/// First offset in `from..from + max_dist` (and within `buf`) where a CRC-valid
/// TM packet starts that holds no other (see [`contains_packet`]).
fn find_sync(buf: &[u8], from: usize, max_dist: usize, eof: bool) -> Sync {
    let end = max_dist.min(buf.len());
    for q in from..end {
        if !may_start_tm(buf[q]) {
            continue;
        }
        let Some(h) = header_at(buf, q) else {
            // A partial header at the end of the buffer.
            return if eof { Sync::None(end) } else { Sync::NeedMore };
        };
        if !h.is_plausible() || h.is_idle() {
            continue;
        }
        let len = h.packet_len();
        match buf.get(q..q + len) {
            Some(p) if crc_ok(p) && !contains_packet(p) => return Sync::Found(q),
            Some(_) => {}
            None if eof => {}
            None => return Sync::NeedMore,
        }
    }
    if end == max_dist || eof {
        Sync::None(end)
    } else {
        Sync::NeedMore
    }
}

/// Reads a whole in-memory delivery (or a part starting at a boundary) as an
/// iterator of [`Item`]s that borrow from it.
#[derive(Debug, Clone)]
pub struct PacketReader<'a> {
    data: &'a [u8],
    base: u64,
    scanner: Scanner,
    /// Stop at the first item starting at or after this absolute offset.
    stop_at: u64,
}

impl<'a> PacketReader<'a> {
    /// A reader over all of `data`, offsets counted from 0.
    pub fn new(data: &'a [u8]) -> Self {
        Self::with_base(data, 0)
    }

    /// A reader over `data` whose first octet has absolute offset `base`.
    pub fn with_base(data: &'a [u8], base: u64) -> Self {
        Self {
            data,
            base,
            scanner: Scanner::new(base),
            stop_at: u64::MAX,
        }
    }

    /// A reader over `data` (absolute offset `base`) that resumes from `scanner`
    /// and stops before the first item that starts at or after `stop_at`.
    pub fn resume(data: &'a [u8], base: u64, scanner: Scanner, stop_at: u64) -> Self {
        Self {
            data,
            base,
            scanner,
            stop_at,
        }
    }

    /// The scanner state: where the next item would start.
    pub fn scanner(&self) -> Scanner {
        self.scanner
    }
}

impl<'a> Iterator for PacketReader<'a> {
    type Item = Item<'a>;

    fn next(&mut self) -> Option<Item<'a>> {
        if self.scanner.position() >= self.stop_at {
            return None;
        }
        match self.scanner.step(self.data, self.base, true) {
            Step::Item(item) => Some(item),
            Step::End | Step::NeedMore => None,
        }
    }
}

/// The first offset at or after `from` where a CRC-valid packet starts, or
/// `None`: the places where a large delivery can be split for parallel reading.
pub fn next_sync_point(data: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while at < data.len() {
        match find_sync(data, at, at.saturating_add(MAX_QUARANTINE_SPAN), true) {
            Sync::Found(q) => return Some(q),
            Sync::None(end) if end >= data.len() => return None,
            Sync::None(end) => at = end,
            Sync::NeedMore => unreachable!("eof is set"),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{SecondaryHeader, encode_idle, encode_packet};

    fn tm(out: &mut Vec<u8>, apid: u16, seq: u16, data_len: usize) -> std::ops::Range<usize> {
        let start = out.len();
        let sec = SecondaryHeader::new(200, 2, seq, 1_000_000_000 + seq as u64);
        let data: Vec<u8> = (0..data_len)
            .map(|i| (i * 7 + seq as usize) as u8)
            .collect();
        encode_packet(out, apid, seq, &sec, &data).unwrap();
        start..out.len()
    }

    fn kinds(data: &[u8]) -> Vec<(u64, usize, String)> {
        PacketReader::new(data)
            .map(|i| {
                let what = match i {
                    Item::Packet(p) => format!("packet {:#x}", p.primary.apid),
                    Item::Idle { .. } => "idle".into(),
                    Item::Quarantine(s) => s.reason.to_string(),
                };
                (i.offset(), i.len(), what)
            })
            .collect()
    }

    #[test]
    fn clean_stream_yields_every_packet_and_idle() {
        let mut d = Vec::new();
        tm(&mut d, 0x101, 1, 10);
        encode_idle(&mut d, 0, 40);
        tm(&mut d, 0x102, 2, 0);
        let k = kinds(&d);
        assert_eq!(
            k,
            vec![
                (0, 32, "packet 0x101".into()),
                (32, 40, "idle".into()),
                (72, 22, "packet 0x102".into())
            ]
        );
    }

    #[test]
    fn garbage_and_bit_flip_are_quarantined_and_resynchronised() {
        let mut d = Vec::new();
        tm(&mut d, 0x101, 1, 10);
        d.extend_from_slice(&[0xAA; 13]);
        let bad = tm(&mut d, 0x101, 2, 30);
        d[bad.start + 25] ^= 0x10;
        let good = tm(&mut d, 0x201, 3, 5);
        // After garbage there is no boundary, so the corrupted packet joins the
        // garbage span, which ends where the next CRC-valid packet starts.
        assert_eq!(
            kinds(&d),
            vec![
                (0, 32, "packet 0x101".into()),
                (32, good.start - 32, "garbage".into()),
                (good.start as u64, good.len(), "packet 0x201".into()),
            ]
        );
        assert_eq!(bad.start, 45);
    }

    #[test]
    fn corrupted_packet_at_boundary_is_crc_mismatch() {
        let mut d = Vec::new();
        tm(&mut d, 0x101, 1, 10);
        let bad = tm(&mut d, 0x101, 2, 30);
        d[bad.start + 25] ^= 0x01;
        encode_idle(&mut d, 0, 9);
        tm(&mut d, 0x102, 3, 5);
        let k = kinds(&d);
        assert_eq!(k[1], (bad.start as u64, bad.len(), "crc_mismatch".into()));
        // The corrupted packet's declared end is a boundary: the idle packet counts.
        assert_eq!(k[2], (bad.end as u64, 9, "idle".into()));
        assert_eq!(k[3].2, "packet 0x102");
    }

    #[test]
    fn idle_packet_after_garbage_is_not_a_sync_point() {
        let mut d = vec![0xEE; 3];
        encode_idle(&mut d, 0, 20);
        let p = tm(&mut d, 0x101, 1, 4);
        let k = kinds(&d);
        assert_eq!(
            k,
            vec![
                (0, 23, "garbage".into()),
                (p.start as u64, p.len(), "packet 0x101".into())
            ]
        );
    }

    #[test]
    fn idle_packet_never_swallows_a_valid_packet() {
        let mut d = Vec::new();
        tm(&mut d, 0x101, 1, 10);
        // A duplicated head of an idle packet whose length covers the next packet.
        let mut idle = Vec::new();
        encode_idle(&mut idle, 0, 60);
        d.extend_from_slice(&idle[..10]);
        let p = tm(&mut d, 0x102, 2, 30);
        let k = kinds(&d);
        assert_eq!(k[1], (32, 10, "truncated_packet".into()));
        assert_eq!(k[2], (p.start as u64, p.len(), "packet 0x102".into()));
    }

    #[test]
    fn truncated_tail_is_truncated_packet() {
        let mut d = Vec::new();
        tm(&mut d, 0x101, 1, 10);
        let t = tm(&mut d, 0x102, 2, 50);
        d.truncate(t.start + 30);
        let k = kinds(&d);
        assert_eq!(k[1], (t.start as u64, 30, "truncated_packet".into()));
        assert_eq!(k.len(), 2);
        let mut d = Vec::new();
        tm(&mut d, 0x101, 1, 10);
        d.extend_from_slice(&[0x09, 0x01, 0xC0]);
        assert_eq!(kinds(&d)[1], (32, 3, "truncated_packet".into()));
    }

    #[test]
    fn long_garbage_is_split_at_fixed_distances() {
        let mut d = vec![0u8; MAX_QUARANTINE_SPAN * 2 + 10];
        let p = tm(&mut d, 0x101, 1, 4);
        let k = kinds(&d);
        assert_eq!(k.len(), 4);
        assert_eq!(k[0], (0, MAX_QUARANTINE_SPAN, "garbage".into()));
        assert_eq!(
            k[1],
            (
                MAX_QUARANTINE_SPAN as u64,
                MAX_QUARANTINE_SPAN,
                "garbage".into()
            )
        );
        assert_eq!(
            k[2],
            ((2 * MAX_QUARANTINE_SPAN) as u64, 10, "garbage".into())
        );
        assert_eq!(k[3].0, p.start as u64);
    }

    #[test]
    fn streaming_in_any_chunks_matches_whole_slice() {
        let mut d = Vec::new();
        for i in 0..40u16 {
            tm(&mut d, 0x101 + (i % 3), i, (i as usize * 37) % 300);
            if i % 7 == 3 {
                d.extend_from_slice(&[0x08, 0x55, 0xC0, 0, 0x01]);
            }
            if i % 5 == 1 {
                encode_idle(&mut d, i, 17);
            }
        }
        let n = d.len();
        d[n / 2] ^= 0x40;
        d.truncate(n - 5);
        let whole: Vec<_> = PacketReader::new(&d).map(owned).collect();
        for chunk in [1, 7, 64, 1000] {
            assert_eq!(stream(&d, chunk), whole, "chunk {chunk}");
        }
    }

    type Owned = (u64, usize, Option<u16>, Option<SpanReason>);

    fn owned(i: Item<'_>) -> Owned {
        match i {
            Item::Packet(p) => (p.offset, p.bytes.len(), Some(p.primary.apid), None),
            Item::Idle { offset, len } => (offset, len, None, None),
            Item::Quarantine(s) => (s.offset, s.bytes.len(), None, Some(s.reason)),
        }
    }

    fn stream(d: &[u8], chunk: usize) -> Vec<Owned> {
        let mut sc = Scanner::new(0);
        let mut buf: Vec<u8> = Vec::new();
        let mut base = 0u64;
        let mut fed = 0;
        let mut out = Vec::new();
        loop {
            let eof = fed == d.len();
            match sc.step(&buf, base, eof) {
                Step::Item(i) => out.push(owned(i)),
                Step::End => return out,
                Step::NeedMore => {
                    let drop = (sc.position() - base) as usize;
                    buf.drain(..drop);
                    base = sc.position();
                    let next = (fed + chunk).min(d.len());
                    buf.extend_from_slice(&d[fed..next]);
                    fed = next;
                }
            }
        }
    }

    #[test]
    fn sync_points_are_packet_starts() {
        let mut d = vec![1, 2, 3];
        let p = tm(&mut d, 0x101, 1, 4);
        assert_eq!(next_sync_point(&d, 0), Some(p.start));
        assert_eq!(next_sync_point(&d, p.start + 1), None);
    }
}
