//! Packing science data into packets in packet-time order: transits into APID
//! 0x101 packets (whole transits, up to a size limit), attitude samples into
//! APID 0x102 packets, with per-APID sequence and message-type counters.
//!
//! Blocks are simulated in parallel but emitted here one by one, in block order.
//! Transits of neighbouring blocks can overlap in time by up to a transit's
//! length, so transits wait in a reorder buffer until no later block can hold an
//! earlier one (the caller's `horizon`).

use super::{AttitudeTruth, ScienceError, ScienceStats, ScienceTruthSink, WindowTruth};
use crate::{GeneratedPacket, PacketContent};
use meridian_core::records::Window;
use meridian_core::time::cuc_round;
use meridian_telemetry::SecondaryHeader;
use meridian_telemetry::appdata::service;
use meridian_telemetry::packet::{SEQ_MODULUS, apid, encode_packet};
use std::collections::{BTreeMap, VecDeque};

/// A transit ready to pack: its window records already encoded.
#[derive(Debug, Clone)]
pub struct PackedTransit {
    pub first_obt_ns: u64,
    pub transit_id: u64,
    pub n_windows: u16,
    /// ICD §4.1 records, without the leading count.
    pub records: Vec<u8>,
    /// The same windows as records (for [`PacketContent`]).
    pub windows: Vec<Window>,
    pub truth: Vec<WindowTruth>,
}

/// The application data of one attitude packet.
#[derive(Debug, Clone)]
pub struct AttitudePacket {
    pub obt_ns: u64,
    pub app_data: Vec<u8>,
    pub samples: Vec<(u64, [f64; 4])>,
    pub truth: Vec<AttitudeTruth>,
}

/// Everything one time block produced.
#[derive(Debug, Default)]
pub struct BlockOutput {
    pub transits: Vec<PackedTransit>,
    pub attitude: Vec<AttitudePacket>,
    pub candidates: u64,
}

struct OpenPacket {
    obt_ns: u64,
    n: u16,
    app_data: Vec<u8>,
    windows: Vec<Window>,
}

/// Sequential packet emitter (see the module docs).
pub struct Emitter<'a> {
    out: &'a mut dyn FnMut(GeneratedPacket),
    truth: &'a mut dyn ScienceTruthSink,
    max_app_data: usize,
    seq: [u16; 2],
    msg: [u16; 2],
    reorder: BTreeMap<(u64, u64), PackedTransit>,
    attitude: VecDeque<AttitudePacket>,
    open: Option<OpenPacket>,
    pub stats: ScienceStats,
}

/// Octets of the smallest window record (ICD §4.1, k = 12).
const MIN_WINDOW_RECORD: usize = 24 + 2 * 12;

const WIN: usize = 0;
const ATT: usize = 1;

impl<'a> Emitter<'a> {
    pub fn new(
        out: &'a mut dyn FnMut(GeneratedPacket),
        truth: &'a mut dyn ScienceTruthSink,
        max_app_data: usize,
        seq_start: [u16; 2],
    ) -> Self {
        Self {
            out,
            truth,
            max_app_data,
            seq: seq_start.map(|s| s % SEQ_MODULUS),
            msg: [0, 0],
            reorder: BTreeMap::new(),
            attitude: VecDeque::new(),
            open: None,
            stats: ScienceStats::default(),
        }
    }

    /// Takes one block's output; packs every transit earlier than `horizon`.
    pub fn push_block(&mut self, block: BlockOutput, horizon: u64) -> Result<(), ScienceError> {
        self.stats.candidate_stars += block.candidates;
        for t in block.transits {
            self.reorder.insert((t.first_obt_ns, t.transit_id), t);
        }
        self.attitude.extend(block.attitude);
        while let Some(entry) = self.reorder.first_entry() {
            if entry.key().0 >= horizon {
                break;
            }
            let t = entry.remove();
            self.add_transit(t)?;
        }
        // Attitude packets may go once no window packet still to come is earlier.
        let limit = match &self.open {
            Some(p) => p.obt_ns,
            None => horizon.saturating_sub(1),
        };
        self.flush_attitude(limit)
    }

    /// Emits everything still held.
    pub fn finish(mut self) -> Result<ScienceStats, ScienceError> {
        while let Some((_, t)) = self.reorder.pop_first() {
            self.add_transit(t)?;
        }
        self.close_window_packet()?;
        self.flush_attitude(u64::MAX)?;
        Ok(self.stats)
    }

    fn add_transit(&mut self, t: PackedTransit) -> Result<(), ScienceError> {
        let fits = |p: &OpenPacket| p.app_data.len() + t.records.len() <= self.max_app_data;
        if self
            .open
            .as_ref()
            .is_some_and(|p| !fits(p) || p.n.checked_add(t.n_windows).is_none())
        {
            self.close_window_packet()?;
        }
        if self.open.is_none() {
            self.flush_attitude(t.first_obt_ns)?;
            let mut app_data = Vec::with_capacity(self.max_app_data);
            app_data.extend_from_slice(&[0, 0]);
            self.open = Some(OpenPacket {
                obt_ns: t.first_obt_ns,
                n: 0,
                app_data,
                // Room for a full packet of the smallest (12-sample) windows, so
                // the list is never regrown and copied while the packet fills.
                windows: Vec::with_capacity(self.max_app_data / MIN_WINDOW_RECORD + 1),
            });
        }
        let p = self.open.as_mut().expect("opened above");
        p.app_data.extend_from_slice(&t.records);
        p.n += t.n_windows;
        p.windows.extend(t.windows);
        self.stats.transits += 1;
        self.stats.windows += t.n_windows as u64;
        for w in &t.truth {
            self.truth.window(w);
        }
        Ok(())
    }

    fn close_window_packet(&mut self) -> Result<(), ScienceError> {
        let Some(mut p) = self.open.take() else {
            return Ok(());
        };
        p.app_data[..2].copy_from_slice(&p.n.to_be_bytes());
        self.emit(
            WIN,
            p.obt_ns,
            &p.app_data,
            PacketContent::Windows(p.windows),
        )?;
        self.stats.window_packets += 1;
        Ok(())
    }

    fn flush_attitude(&mut self, up_to_ns: u64) -> Result<(), ScienceError> {
        while self.attitude.front().is_some_and(|a| a.obt_ns <= up_to_ns) {
            let a = self.attitude.pop_front().expect("checked");
            self.stats.attitude_packets += 1;
            self.stats.attitude_samples += a.samples.len() as u64;
            self.emit(
                ATT,
                a.obt_ns,
                &a.app_data,
                PacketContent::Attitude(a.samples),
            )?;
            for t in &a.truth {
                self.truth.attitude(t);
            }
        }
        Ok(())
    }

    fn emit(
        &mut self,
        which: usize,
        first_record_ns: u64,
        app_data: &[u8],
        content: PacketContent,
    ) -> Result<(), ScienceError> {
        let (apid, (svc, sub)) = match which {
            WIN => (apid::TRANSIT_WINDOWS, service::WINDOWS),
            _ => (apid::ATTITUDE, service::ATTITUDE),
        };
        let obt_ns = cuc_round(first_record_ns);
        let sec = SecondaryHeader::new(svc, sub, self.msg[which], obt_ns);
        let mut bytes = Vec::with_capacity(app_data.len() + 22);
        encode_packet(&mut bytes, apid, self.seq[which], &sec, app_data)?;
        self.stats.bytes += bytes.len() as u64;
        (self.out)(GeneratedPacket {
            apid,
            seq: self.seq[which],
            obt_ns,
            bytes,
            content,
        });
        self.seq[which] = (self.seq[which] + 1) % SEQ_MODULUS;
        self.msg[which] = self.msg[which].wrapping_add(1);
        Ok(())
    }
}
