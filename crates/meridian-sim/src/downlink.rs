//! A priority downlink with realistic faults: turns generated packets into
//! delivery files (`.tm` or `.tm.zst`) and records exactly what it did to them.
//!
//! The OBT line is cut into ground-station passes every
//! [`DownlinkConfig::pass_interval_s`]. Pass `k` sends the housekeeping generated
//! since pass `k − 1` first (recent housekeeping has priority), then the science
//! generated [`DownlinkConfig::science_delay_passes`] passes earlier, then
//! retransmissions and duplicates of older packets, so deliveries interleave
//! APIDs and overlap in time. A pass is split into 1 to
//! [`DownlinkConfig::max_deliveries_per_pass`] files, each raw or zstd (one or
//! more frames).
//!
//! Faults, all drawn from the seed: bursts of lost packets (never delivered),
//! bit-flipped copies (the CRC fails; most are retransmitted intact in a later
//! pass), byte-for-byte duplicates, garbage bytes between packets, idle packets,
//! a truncated copy of a packet at the end of some files, and CRC-valid event
//! reports of APID 0x3FF (service 5/1, not in ICD §4: kept undecoded).
//!
//! Exactness: every fault span is checked against a reference resynchronising
//! decoder scan (a CRC-valid packet or, where a packet ended, an idle header
//! must not appear at any offset inside a garbage, corrupted or truncated span)
//! and redrawn if it would fool a decoder, so "every intact packet is recovered
//! and nothing else" holds for the truth. Housekeeping reports inside
//! protected time ranges (the anomaly slots of [`crate::hk`]) are never lost,
//! and no structure loses more than `hk::db::NUDGE_DEPTH − 1` reports in a row.
//!
//! Delivery files are written atomically by a writer thread while the next
//! pass is assembled (one delivery of extra memory), and the zstd frames of a
//! large delivery are compressed in parallel; neither changes a byte.

use crate::GeneratedPacket;
use crate::hk::db::NUDGE_DEPTH;
use meridian_core::product::write_file_atomic;
use meridian_core::time::NS_PER_S;
use meridian_telemetry::crc::crc16;
use meridian_telemetry::packet::{
    PRIMARY_HEADER_LEN, PrimaryHeader, SEQ_MODULUS, SecondaryHeader, apid, encode_idle,
    encode_packet,
};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::mpsc;

/// APID of the on-board event reports the simulator adds (not in ICD §4).
pub const EVENT_APID: u16 = 0x3FF;

/// Fault rates and pass layout of the downlink. Defaults are realistic rates
/// (per packet unless stated).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DownlinkConfig {
    /// OBT between two ground-station passes, seconds.
    pub pass_interval_s: f64,
    /// Passes science waits behind housekeeping.
    pub science_delay_passes: u32,
    /// Files a pass is split into: 1 to this many.
    pub max_deliveries_per_pass: u32,
    /// Fraction of files written zstd-compressed.
    pub zstd_fraction: f64,
    /// zstd level of compressed files.
    pub zstd_level: i32,
    /// Frames of a compressed file: 1 to this many.
    pub max_zstd_frames: u32,
    /// Probability that a packet starts a burst of lost packets (of its APID).
    pub drop_rate: f64,
    /// Longest burst of lost packets.
    pub max_drop_burst: u32,
    /// Probability that a packet's first copy arrives bit-flipped.
    pub corrupt_rate: f64,
    /// Probability that a corrupted packet is retransmitted intact later.
    pub retransmit_rate: f64,
    /// Probability that an intact packet is delivered once more, later.
    pub duplicate_rate: f64,
    /// Probability of garbage bytes before a packet.
    pub garbage_rate: f64,
    /// Longest run of garbage bytes.
    pub max_garbage_len: u32,
    /// Probability of an idle packet after a packet.
    pub idle_rate: f64,
    /// Fraction of files that end with a truncated (extra) copy of a packet.
    pub truncate_fraction: f64,
    /// Event reports (APID 0x3FF) per pass.
    pub events_per_pass: u32,
}

impl Default for DownlinkConfig {
    fn default() -> Self {
        Self {
            pass_interval_s: 1800.0,
            science_delay_passes: 1,
            max_deliveries_per_pass: 3,
            zstd_fraction: 0.5,
            zstd_level: 1,
            max_zstd_frames: 3,
            drop_rate: 0.0005,
            max_drop_burst: 6,
            corrupt_rate: 0.001,
            retransmit_rate: 0.8,
            duplicate_rate: 0.005,
            garbage_rate: 0.0005,
            max_garbage_len: 200,
            idle_rate: 0.001,
            truncate_fraction: 0.5,
            events_per_pass: 1,
        }
    }
}

impl DownlinkConfig {
    /// A downlink that delivers every packet once, intact, in raw files.
    pub fn perfect() -> Self {
        Self {
            zstd_fraction: 0.0,
            drop_rate: 0.0,
            corrupt_rate: 0.0,
            duplicate_rate: 0.0,
            garbage_rate: 0.0,
            idle_rate: 0.0,
            truncate_fraction: 0.0,
            events_per_pass: 0,
            ..Self::default()
        }
    }

    fn validate(&self) -> Result<(), DownlinkError> {
        let probs = [
            ("zstd_fraction", self.zstd_fraction),
            ("drop_rate", self.drop_rate),
            ("corrupt_rate", self.corrupt_rate),
            ("retransmit_rate", self.retransmit_rate),
            ("duplicate_rate", self.duplicate_rate),
            ("garbage_rate", self.garbage_rate),
            ("idle_rate", self.idle_rate),
            ("truncate_fraction", self.truncate_fraction),
        ];
        for (name, p) in probs {
            if !(0.0..=1.0).contains(&p) {
                return Err(DownlinkError::Config(format!(
                    "{name} = {p} is not in [0, 1]"
                )));
            }
        }
        if !(self.pass_interval_s.is_finite() && self.pass_interval_s >= 1.0) {
            return Err(DownlinkError::Config(format!(
                "pass_interval_s = {} must be at least 1",
                self.pass_interval_s
            )));
        }
        if self.max_deliveries_per_pass == 0 || self.max_zstd_frames == 0 {
            return Err(DownlinkError::Config(
                "max_deliveries_per_pass and max_zstd_frames must be at least 1".into(),
            ));
        }
        if self.max_drop_burst as u64 >= SEQ_MODULUS as u64 / 2 {
            return Err(DownlinkError::Config(
                "max_drop_burst must stay well below the 14-bit sequence count".into(),
            ));
        }
        Ok(())
    }
}

/// Why the downlink failed.
#[derive(Debug, thiserror::Error)]
pub enum DownlinkError {
    #[error("downlink configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Write(#[from] meridian_core::ProductError),
    #[error("{0}: the delivery writer stopped before it")]
    WriterStopped(PathBuf),
    #[error("compressing {path}: {source}")]
    Compress {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A packet copy at `offset` of a delivery's (decompressed) stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PacketSpan {
    pub offset: u64,
    pub length: u64,
    pub apid: u16,
    pub seq: u16,
    pub obt_ns: u64,
}

/// A bit-flipped packet copy; `flipped_bits` count from the packet's first bit
/// (most significant bit of its first octet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorruptSpan {
    pub offset: u64,
    pub length: u64,
    pub apid: u16,
    pub seq: u16,
    pub obt_ns: u64,
    pub flipped_bits: Vec<u64>,
}

/// The first `length` of `full_length` octets of a packet, ending a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TruncatedSpan {
    pub offset: u64,
    pub length: u64,
    pub full_length: u64,
    pub apid: u16,
    pub seq: u16,
    pub obt_ns: u64,
}

/// Bytes at `offset` (garbage, idle packets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByteSpan {
    pub offset: u64,
    pub length: u64,
}

/// What one delivery file holds (a line of `truth/deliveries.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryTruth {
    pub name: String,
    pub pass: u64,
    pub compressed: bool,
    /// zstd frames (0 for raw files).
    pub frames: u32,
    /// Octets of the file.
    pub size: u64,
    /// Octets of the decompressed stream (offsets count in it).
    pub stream_len: u64,
    /// Intact packet copies in the file (every kind, idle packets excluded).
    pub intact_packets: u64,
    /// Packet time range of the intact copies, OBT ns.
    pub first_obt_ns: Option<u64>,
    pub last_obt_ns: Option<u64>,
    /// Intact copies of packets also delivered intact elsewhere (extra copies).
    pub duplicated: Vec<PacketSpan>,
    /// Intact re-sends of packets whose first copy was corrupted.
    pub retransmitted: Vec<PacketSpan>,
    pub corrupted: Vec<CorruptSpan>,
    pub garbage: Vec<ByteSpan>,
    pub truncated: Vec<TruncatedSpan>,
    pub idle: Vec<ByteSpan>,
    /// CRC-valid packets of an APID not in ICD §4.
    pub unknown: Vec<PacketSpan>,
}

/// The header fields of a packet the downlink needs beside its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketHead {
    pub apid: u16,
    pub seq: u16,
    /// Packet time, OBT ns.
    pub obt_ns: u64,
}

/// What happened to one generated packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fate {
    /// Intact copies that will be delivered (0: the packet is lost).
    pub intact_copies: u32,
}

/// Totals of a downlink run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DownlinkStats {
    pub deliveries: u64,
    pub compressed_deliveries: u64,
    pub file_bytes: u64,
    pub stream_bytes: u64,
    pub packets_in: u64,
    pub packets_lost: u64,
    pub intact_copies: u64,
    pub duplicated: u64,
    pub retransmitted: u64,
    pub corrupted: u64,
    pub garbage_spans: u64,
    pub truncated: u64,
    pub idle: u64,
    pub unknown: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Original,
    Corrupted,
    Retransmission,
    Duplicate,
    Unknown,
}

#[derive(Debug, Clone)]
struct Item {
    apid: u16,
    seq: u16,
    obt_ns: u64,
    bytes: Rc<Vec<u8>>,
    role: Role,
}

/// One fault span of a delivery being built, kept for the decoder scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FaultKind {
    Garbage(usize),
    Corrupted(usize),
    Truncated,
}

/// The downlink: feed it packets in (roughly) time order, then [`Downlink::finish`].
pub struct Downlink {
    cfg: DownlinkConfig,
    rng: Pcg64,
    dir: PathBuf,
    start_ns: u64,
    pass_ns: u64,
    /// Index of the next pass to run.
    pass: u64,
    hk_queue: Vec<Item>,
    science_now: Vec<Item>,
    science_backlog: VecDeque<Vec<Item>>,
    extra: BTreeMap<u64, Vec<Item>>,
    bursts: HashMap<u16, u32>,
    hk_loss_run: HashMap<u16, usize>,
    event_seq: u16,
    idle_seq: u16,
    zstd: Option<zstd::bulk::Compressor<'static>>,
    /// Buffers reused across deliveries (a fresh multi-megabyte buffer per
    /// file cost more in page faults than the copying it holds).
    stream: Vec<u8>,
    frame: Vec<u8>,
    writer: FileWriter,
    deliveries: Vec<DeliveryTruth>,
    stats: DownlinkStats,
}

impl Downlink {
    /// A downlink writing its deliveries into `dir` (which must exist).
    pub fn new(
        seed: u64,
        start_obt_ns: u64,
        cfg: &DownlinkConfig,
        dir: impl AsRef<Path>,
    ) -> Result<Self, DownlinkError> {
        cfg.validate()?;
        Ok(Self {
            cfg: cfg.clone(),
            rng: Pcg64::seed_from_u64(seed ^ 0xD0_4411_4E00),
            dir: dir.as_ref().to_owned(),
            start_ns: start_obt_ns,
            pass_ns: (cfg.pass_interval_s * 1e9) as u64,
            pass: 0,
            hk_queue: Vec::new(),
            science_now: Vec::new(),
            science_backlog: VecDeque::new(),
            extra: BTreeMap::new(),
            bursts: HashMap::new(),
            hk_loss_run: HashMap::new(),
            event_seq: 0,
            idle_seq: 0,
            zstd: None,
            stream: Vec::new(),
            frame: Vec::new(),
            writer: FileWriter::spawn(),
            deliveries: Vec::new(),
            stats: DownlinkStats::default(),
        })
    }

    /// Queues one generated packet and decides its fate. `protected` packets are
    /// never lost; `sid` (housekeeping) bounds the losses of one structure.
    pub fn push(
        &mut self,
        packet: &GeneratedPacket,
        protected: bool,
        sid: Option<u16>,
    ) -> Result<Fate, DownlinkError> {
        let head = PacketHead {
            apid: packet.apid,
            seq: packet.seq,
            obt_ns: packet.obt_ns,
        };
        self.push_bytes(head, packet.bytes.clone(), protected, sid)
    }

    /// [`Downlink::push`] of a packet's encoded bytes, taken without a copy.
    pub fn push_bytes(
        &mut self,
        packet: PacketHead,
        bytes: Vec<u8>,
        protected: bool,
        sid: Option<u16>,
    ) -> Result<Fate, DownlinkError> {
        while packet.obt_ns >= self.pass_end(self.pass) {
            self.run_pass(false)?;
        }
        self.stats.packets_in += 1;
        let hk_run = sid.map_or(0, |s| *self.hk_loss_run.get(&s).unwrap_or(&0));
        let may_lose = !protected && hk_run + 1 < NUDGE_DEPTH;
        let burst = self.bursts.entry(packet.apid).or_insert(0);
        if *burst == 0 && self.cfg.drop_rate > 0.0 && self.rng.random::<f64>() < self.cfg.drop_rate
        {
            *burst = self.rng.random_range(1..=self.cfg.max_drop_burst.max(1));
        }
        let dropped = *burst > 0 && may_lose;
        if *burst > 0 {
            *burst -= 1;
        }
        let bytes = Rc::new(bytes);
        let item = |role| Item {
            apid: packet.apid,
            seq: packet.seq,
            obt_ns: packet.obt_ns,
            bytes: bytes.clone(),
            role,
        };
        let is_hk = packet.apid == apid::HOUSEKEEPING;
        let send_pass = if is_hk {
            self.pass
        } else {
            self.pass + self.cfg.science_delay_passes as u64
        };
        let mut intact = 0;
        if !dropped {
            let corrupted = self.rng.random::<f64>() < self.cfg.corrupt_rate;
            let first = if corrupted {
                Role::Corrupted
            } else {
                Role::Original
            };
            self.queue(is_hk, item(first));
            if corrupted {
                if !may_lose || self.rng.random::<f64>() < self.cfg.retransmit_rate {
                    let later = send_pass + 1 + self.rng.random_range(0..2);
                    self.extra
                        .entry(later)
                        .or_default()
                        .push(item(Role::Retransmission));
                    intact += 1;
                }
            } else {
                intact += 1;
            }
            if intact > 0 && self.rng.random::<f64>() < self.cfg.duplicate_rate {
                let later = send_pass + 1 + self.rng.random_range(0..2);
                self.extra
                    .entry(later)
                    .or_default()
                    .push(item(Role::Duplicate));
                intact += 1;
            }
        }
        if let Some(s) = sid {
            let run = self.hk_loss_run.entry(s).or_insert(0);
            *run = if intact == 0 { *run + 1 } else { 0 };
        }
        if intact == 0 {
            self.stats.packets_lost += 1;
        }
        Ok(Fate {
            intact_copies: intact,
        })
    }

    /// Sends everything still queued and returns what was delivered, once
    /// every delivery file is in place.
    pub fn finish(mut self) -> Result<(Vec<DeliveryTruth>, DownlinkStats), DownlinkError> {
        while !(self.hk_queue.is_empty()
            && self.science_now.is_empty()
            && self.science_backlog.is_empty()
            && self.extra.is_empty())
        {
            self.run_pass(true)?;
        }
        self.writer.finish()?;
        Ok((self.deliveries, self.stats))
    }

    /// Deliveries made so far (their files may still be being written).
    pub fn deliveries(&self) -> &[DeliveryTruth] {
        &self.deliveries
    }

    fn pass_end(&self, pass: u64) -> u64 {
        self.start_ns + (pass + 1) * self.pass_ns
    }

    fn queue(&mut self, is_hk: bool, item: Item) {
        if is_hk {
            self.hk_queue.push(item);
        } else {
            self.science_now.push(item);
        }
    }

    /// Runs the next pass; after the end of the data (`finishing`) the science
    /// backlog goes at once.
    fn run_pass(&mut self, finishing: bool) -> Result<(), DownlinkError> {
        let pass = self.pass;
        self.pass += 1;
        let mut items = std::mem::take(&mut self.hk_queue);
        self.science_backlog
            .push_back(std::mem::take(&mut self.science_now));
        while self.science_backlog.len() > self.cfg.science_delay_passes as usize
            || (finishing && !self.science_backlog.is_empty())
        {
            items.extend(self.science_backlog.pop_front().unwrap_or_default());
        }
        items.extend(self.extra.remove(&pass).unwrap_or_default());
        if items.is_empty() {
            return Ok(());
        }
        for _ in 0..self.cfg.events_per_pass {
            let at = self.rng.random_range(0..=items.len());
            let event = self.event_report(pass);
            items.insert(at, event);
        }
        let n_files = self
            .rng
            .random_range(1..=self.cfg.max_deliveries_per_pass)
            .min(items.len() as u32) as usize;
        let mut cuts: Vec<usize> = (0..n_files - 1)
            .map(|_| self.rng.random_range(1..items.len()))
            .collect();
        cuts.sort_unstable();
        cuts.dedup();
        let mut rest = items.as_slice();
        let mut taken = 0;
        for (j, cut) in cuts.iter().chain(std::iter::once(&items.len())).enumerate() {
            let (file, tail) = rest.split_at(cut - taken);
            taken = *cut;
            rest = tail;
            self.write_delivery(pass, j, file)?;
        }
        Ok(())
    }

    /// An on-board event report (APID 0x3FF, service 5/1): CRC-valid, not in ICD §4.
    fn event_report(&mut self, pass: u64) -> Item {
        let t = self.pass_end(pass).div_ceil(NS_PER_S) * NS_PER_S;
        let mut app = vec![0x00, 0x2A];
        app.extend_from_slice(format!("ground station contact {pass}").as_bytes());
        let mut bytes = Vec::new();
        encode_packet(
            &mut bytes,
            EVENT_APID,
            self.event_seq,
            &SecondaryHeader::new(5, 1, self.event_seq, t),
            &app,
        )
        .expect("event reports are small");
        let item = Item {
            apid: EVENT_APID,
            seq: self.event_seq,
            obt_ns: t,
            bytes: Rc::new(bytes),
            role: Role::Unknown,
        };
        self.event_seq = (self.event_seq + 1) % SEQ_MODULUS;
        item
    }

    fn write_delivery(&mut self, pass: u64, j: usize, items: &[Item]) -> Result<(), DownlinkError> {
        let compressed = self.rng.random::<f64>() < self.cfg.zstd_fraction;
        let name = format!(
            "MRD_P{pass:04}_{j}.tm{}",
            if compressed { ".zst" } else { "" }
        );
        let mut d = DeliveryTruth {
            name,
            pass,
            compressed,
            frames: 0,
            size: 0,
            stream_len: 0,
            intact_packets: 0,
            first_obt_ns: None,
            last_obt_ns: None,
            duplicated: Vec::new(),
            retransmitted: Vec::new(),
            corrupted: Vec::new(),
            garbage: Vec::new(),
            truncated: Vec::new(),
            idle: Vec::new(),
            unknown: Vec::new(),
        };
        let total: usize = items.iter().map(|i| i.bytes.len()).sum();
        let mut buf = std::mem::take(&mut self.stream);
        buf.clear();
        buf.reserve(total + total / 64 + 1024);
        let mut faults: Vec<(FaultKind, usize, usize)> = Vec::new();
        let mut intact_items: Vec<usize> = Vec::new();
        for (k, item) in items.iter().enumerate() {
            if self.rng.random::<f64>() < self.cfg.garbage_rate {
                let len = self.rng.random_range(1..=self.cfg.max_garbage_len.max(1)) as usize;
                let at = buf.len();
                buf.resize(at + len, 0);
                self.rng.fill(&mut buf[at..]);
                faults.push((FaultKind::Garbage(d.garbage.len()), at, len));
                d.garbage.push(ByteSpan {
                    offset: at as u64,
                    length: len as u64,
                });
            }
            let at = buf.len();
            buf.extend_from_slice(&item.bytes);
            let span = PacketSpan {
                offset: at as u64,
                length: item.bytes.len() as u64,
                apid: item.apid,
                seq: item.seq,
                obt_ns: item.obt_ns,
            };
            match item.role {
                Role::Corrupted => {
                    let bits = self.flip_bits(&mut buf[at..]);
                    faults.push((
                        FaultKind::Corrupted(d.corrupted.len()),
                        at,
                        item.bytes.len(),
                    ));
                    d.corrupted.push(CorruptSpan {
                        offset: span.offset,
                        length: span.length,
                        apid: span.apid,
                        seq: span.seq,
                        obt_ns: span.obt_ns,
                        flipped_bits: bits,
                    });
                    continue;
                }
                Role::Duplicate => d.duplicated.push(span),
                Role::Retransmission => d.retransmitted.push(span),
                Role::Unknown => d.unknown.push(span),
                Role::Original => {}
            }
            intact_items.push(k);
            d.intact_packets += 1;
            d.first_obt_ns = Some(d.first_obt_ns.map_or(item.obt_ns, |t| t.min(item.obt_ns)));
            d.last_obt_ns = Some(d.last_obt_ns.map_or(item.obt_ns, |t| t.max(item.obt_ns)));
            if self.rng.random::<f64>() < self.cfg.idle_rate {
                let at = buf.len();
                let len = self.rng.random_range(7..=96);
                encode_idle(&mut buf, self.idle_seq, len);
                self.idle_seq = (self.idle_seq + 1) % SEQ_MODULUS;
                d.idle.push(ByteSpan {
                    offset: at as u64,
                    length: len as u64,
                });
            }
        }
        if !intact_items.is_empty() && self.rng.random::<f64>() < self.cfg.truncate_fraction {
            let pick = intact_items[self.rng.random_range(0..intact_items.len())];
            let item = &items[pick];
            let len = self.rng.random_range(1..item.bytes.len());
            let at = buf.len();
            buf.extend_from_slice(&item.bytes[..len]);
            faults.push((FaultKind::Truncated, at, len));
            d.truncated.push(TruncatedSpan {
                offset: at as u64,
                length: len as u64,
                full_length: item.bytes.len() as u64,
                apid: item.apid,
                seq: item.seq,
                obt_ns: item.obt_ns,
            });
        }
        self.make_unambiguous(&mut buf, &faults, &mut d);
        d.stream_len = buf.len() as u64;
        let path = self.dir.join(&d.name);
        let file_bytes = if compressed {
            let mut packed = self.writer.spare_buffer();
            d.frames = self.compress(&buf, &mut packed, &path)?;
            self.stream = buf;
            packed
        } else {
            // The stream itself goes to the writer; the next one needs a buffer.
            self.stream = self.writer.spare_buffer();
            buf
        };
        d.size = file_bytes.len() as u64;
        self.writer.write(path, file_bytes)?;
        self.count(&d);
        self.deliveries.push(d);
        Ok(())
    }

    fn count(&mut self, d: &DeliveryTruth) {
        let s = &mut self.stats;
        s.deliveries += 1;
        s.compressed_deliveries += d.compressed as u64;
        s.file_bytes += d.size;
        s.stream_bytes += d.stream_len;
        s.intact_copies += d.intact_packets;
        s.duplicated += d.duplicated.len() as u64;
        s.retransmitted += d.retransmitted.len() as u64;
        s.corrupted += d.corrupted.len() as u64;
        s.garbage_spans += d.garbage.len() as u64;
        s.truncated += d.truncated.len() as u64;
        s.idle += d.idle.len() as u64;
        s.unknown += d.unknown.len() as u64;
    }

    /// Flips 1 to 3 distinct bits; returns their positions, ascending.
    fn flip_bits(&mut self, packet: &mut [u8]) -> Vec<u64> {
        let n_bits = packet.len() as u64 * 8;
        let mut bits: Vec<u64> = Vec::new();
        let want = self.rng.random_range(1..=3);
        while bits.len() < want {
            let b = self.rng.random_range(0..n_bits);
            if !bits.contains(&b) {
                bits.push(b);
            }
        }
        bits.sort_unstable();
        for &b in &bits {
            packet[(b / 8) as usize] ^= 0x80 >> (b % 8);
        }
        bits
    }

    /// Redraws fault spans until no offset inside one is a sync point a
    /// resynchronising decoder could take for a packet.
    fn make_unambiguous(
        &mut self,
        buf: &mut Vec<u8>,
        faults: &[(FaultKind, usize, usize)],
        d: &mut DeliveryTruth,
    ) {
        loop {
            let found = faults.iter().find_map(|&(kind, at, len)| {
                let end = (at + len).min(buf.len());
                (at..end)
                    .find(|&o| false_sync(buf, o, o == at))
                    .map(|o| (kind, at, len, o))
            });
            let Some((kind, at, len, o)) = found else {
                return;
            };
            match kind {
                FaultKind::Garbage(_) => self.rng.fill(&mut buf[at..at + len]),
                FaultKind::Corrupted(i) => {
                    let flips = &mut d.corrupted[i].flipped_bits;
                    // A sync inside the copy that the flips did not make (its
                    // bytes are the packet's own) is broken by flipping the
                    // last bit of its first octet: the CRC there then fails.
                    let bit = ((o - at) * 8 + 7) as u64;
                    if o > at && !flips.contains(&bit) {
                        buf[o] ^= 1;
                        flips.push(bit);
                        flips.sort_unstable();
                        continue;
                    }
                    // Otherwise undo the flips and flip others.
                    for &b in flips.iter() {
                        buf[at + (b / 8) as usize] ^= 0x80 >> (b % 8);
                    }
                    d.corrupted[i].flipped_bits = self.flip_bits(&mut buf[at..at + len]);
                }
                FaultKind::Truncated => {
                    // The truncated copy ends the file: cut it before the false
                    // sync (never at its own start, whose length does not fit).
                    buf.truncate(o);
                    let t = d.truncated.last_mut().expect("one truncated span");
                    t.length = (o - at) as u64;
                }
            }
        }
    }

    /// Compresses `buf` into `out` as 1 to `max_zstd_frames` frames; returns
    /// the number of frames.
    fn compress(
        &mut self,
        buf: &[u8],
        out: &mut Vec<u8>,
        path: &Path,
    ) -> Result<u32, DownlinkError> {
        let err = |source| DownlinkError::Compress {
            path: path.to_owned(),
            source,
        };
        let frames = self.rng.random_range(1..=self.cfg.max_zstd_frames) as usize;
        let mut cuts: Vec<usize> = (1..frames)
            .map(|_| self.rng.random_range(0..=buf.len()))
            .collect();
        cuts.push(0);
        cuts.push(buf.len());
        cuts.sort_unstable();
        cuts.dedup();
        if self.zstd.is_none() {
            self.zstd = Some(zstd::bulk::Compressor::new(self.cfg.zstd_level).map_err(err)?);
        }
        let z = self.zstd.as_mut().expect("compressor just made");
        let ranges: Vec<&[u8]> = cuts.windows(2).map(|w| &buf[w[0]..w[1]]).collect();
        let parallel = buf.len() >= PARALLEL_FRAMES_MIN;
        compress_frames(
            z,
            self.cfg.zstd_level,
            &ranges,
            parallel,
            &mut self.frame,
            out,
        )
        .map_err(err)
    }
}

/// Compresses each of `ranges` as one zstd frame (an empty input as one empty
/// frame) into `out`; returns the number of frames. In `parallel`, the frames
/// after the first are compressed on threads of their own (same level, so the
/// same bytes) while this thread does the first: frames are independent, and
/// this shortens the day's tail, the last science pass.
fn compress_frames(
    z: &mut zstd::bulk::Compressor<'static>,
    level: i32,
    ranges: &[&[u8]],
    parallel: bool,
    frame: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> std::io::Result<u32> {
    out.clear();
    let Some((first, rest)) = ranges.split_first() else {
        compress_frame(z, &[], frame)?;
        out.extend_from_slice(frame);
        return Ok(1);
    };
    if !parallel {
        for input in ranges {
            compress_frame(z, input, frame)?;
            out.extend_from_slice(frame);
        }
        return Ok(ranges.len() as u32);
    }
    let later = std::thread::scope(|scope| {
        let handles: Vec<_> = rest
            .iter()
            .map(|&input| scope.spawn(move || zstd::bulk::compress(input, level)))
            .collect();
        let first_done = compress_frame(z, first, frame);
        let later: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().expect("zstd does not panic"))
            .collect();
        first_done.map(|_| later)
    })?;
    out.extend_from_slice(frame);
    for f in later {
        out.extend_from_slice(&f?);
    }
    Ok(ranges.len() as u32)
}

/// Largest buffer a delivery file's writer hands back for reuse.
const MAX_RECYCLED: usize = 32 << 20;

/// Streams at least this long have their zstd frames compressed in parallel.
const PARALLEL_FRAMES_MIN: usize = 1 << 20;

/// Writes delivery files atomically on a thread of its own, so the next
/// pass is assembled while a file is written and fsynced (the fsyncs were
/// most of a day's wall time once the CPU work was parallel). Buffers come
/// back for reuse; the first error is reported by the next call.
struct FileWriter {
    jobs: Option<mpsc::SyncSender<(PathBuf, Vec<u8>)>>,
    spare: mpsc::Receiver<Vec<u8>>,
    thread: Option<std::thread::JoinHandle<Result<(), meridian_core::ProductError>>>,
}

impl FileWriter {
    fn spawn() -> Self {
        // A rendezvous: the writer holds the file it writes and no other, so
        // memory grows by one delivery, not a queue of them.
        let (jobs, queue) = mpsc::sync_channel::<(PathBuf, Vec<u8>)>(0);
        let (give_back, spare) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            for (path, bytes) in queue {
                write_file_atomic(&path, &bytes)?;
                // Very large buffers are freed rather than kept for reuse, so
                // a full-scale day does not hold an extra pass of telemetry.
                // (The downlink may be gone already: then nobody wants it.)
                if bytes.capacity() <= MAX_RECYCLED {
                    let _ = give_back.send(bytes);
                }
            }
            Ok(())
        });
        Self {
            jobs: Some(jobs),
            spare,
            thread: Some(thread),
        }
    }

    /// An empty buffer, recycled from a written file when there is one (at
    /// most one is kept: the others are freed).
    fn spare_buffer(&mut self) -> Vec<u8> {
        let mut b = self.spare.try_iter().last().unwrap_or_default();
        b.clear();
        b
    }

    fn write(&mut self, path: PathBuf, bytes: Vec<u8>) -> Result<(), DownlinkError> {
        let sent = match &self.jobs {
            Some(jobs) => jobs.send((path.clone(), bytes)).is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // The writer stopped: its error explains why.
        self.finish()?;
        Err(DownlinkError::WriterStopped(path))
    }

    /// Waits for every queued file; the first error if one failed.
    fn finish(&mut self) -> Result<(), DownlinkError> {
        self.jobs = None;
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(result)) => Ok(result?),
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            None => Ok(()),
        }
    }
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        // Files already queued are still written (and their errors ignored:
        // the downlink was abandoned before `finish`).
        let _ = self.finish();
    }
}

/// One zstd frame of `input` into `frame` (cleared first, grown as needed).
fn compress_frame(
    z: &mut zstd::bulk::Compressor<'static>,
    input: &[u8],
    frame: &mut Vec<u8>,
) -> std::io::Result<()> {
    frame.clear();
    frame.reserve(zstd::zstd_safe::compress_bound(input.len()));
    z.compress_to_buffer(input, frame).map(|_| ())
}

/// Whether a resynchronising decoder could take offset `o` of `buf` for the
/// start of a packet: a plausible non-idle header whose length fits and whose
/// CRC matches, or (where a previous packet ended) a plausible idle header.
pub fn false_sync(buf: &[u8], o: usize, at_packet_boundary: bool) -> bool {
    let Some(h) = buf.get(o..o + PRIMARY_HEADER_LEN) else {
        return false;
    };
    let h = PrimaryHeader::parse(h.try_into().expect("six octets"));
    if !h.is_plausible() {
        return false;
    }
    if h.is_idle() {
        return at_packet_boundary;
    }
    let len = h.packet_len();
    let Some(packet) = buf.get(o..o + len) else {
        return false;
    };
    crc16(&packet[..len - 2]) == u16::from_be_bytes([packet[len - 2], packet[len - 1]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_frames_are_the_sequential_frames() {
        // Compressible but not trivial: a byte pattern with a slow drift.
        let buf: Vec<u8> = (0..3_000_000u32)
            .map(|i| (i % 251) as u8 ^ (i >> 13) as u8)
            .collect();
        let ranges: Vec<&[u8]> = vec![
            &buf[..1_000_000],
            &buf[1_000_000..1_700_001],
            &buf[1_700_001..],
        ];
        let mut z = zstd::bulk::Compressor::new(1).unwrap();
        let (mut frame, mut sequential, mut parallel) = (Vec::new(), Vec::new(), Vec::new());
        let n = compress_frames(&mut z, 1, &ranges, false, &mut frame, &mut sequential).unwrap();
        let m = compress_frames(&mut z, 1, &ranges, true, &mut frame, &mut parallel).unwrap();
        assert_eq!((n, m), (3, 3));
        assert!(sequential == parallel, "parallel frames differ");
        assert_eq!(zstd::stream::decode_all(&parallel[..]).unwrap(), buf);
        let n = compress_frames(&mut z, 1, &[], true, &mut frame, &mut parallel).unwrap();
        assert_eq!(n, 1);
        assert!(zstd::stream::decode_all(&parallel[..]).unwrap().is_empty());
    }
}
