//! Reading new deliveries on several threads: each reader takes whole
//! deliveries, decodes their three stream files and sends their records in
//! batches of whole packets, already reduced ([`primitive_root`]) and held in
//! the sorter's compact form, so the one thread that keeps the packet index
//! only decides per packet and copies.
//!
//! Batches of different deliveries arrive interleaved, in whatever order the
//! readers finish them. That is harmless: what the index keeps per packet is a
//! function of the set of deliveries (variants sorted by hash, the smallest
//! delivery id), and the chunks are sorted by a total order.

use crate::record::{Arena, StreamRecord, primitive_root};
use crate::state::DeliveryId;
use meridian_core::records::{Attitude, Hk, PacketRef, Window};
use meridian_core::{ProductError, ProductReader};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::SyncSender;

/// Records per batch (batches end at a packet's end, so may hold a few more).
const BATCH: usize = 2048;

/// One packet's records inside a [`PacketBatch`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct PacketSpan {
    /// Its records are `held[previous span's end..end]`.
    pub end: usize,
    pub packet: PacketRef,
    /// Time span of its records.
    pub lo: u64,
    pub hi: u64,
    /// Back-to-back repeats removed from it.
    pub repeats: u64,
}

/// Consecutive whole packets of one delivery's stream file.
pub(crate) struct PacketBatch<R: StreamRecord> {
    pub delivery: DeliveryId,
    pub held: Vec<R::Held>,
    /// Samples of `held`.
    pub arena: Arena,
    pub packets: Vec<PacketSpan>,
    /// Records read, repeats included.
    pub records_read: u64,
}

impl<R: StreamRecord> PacketBatch<R> {
    fn new(delivery: DeliveryId) -> Self {
        Self {
            delivery,
            held: Vec::with_capacity(BATCH + 64),
            arena: Arena::new(),
            packets: Vec::new(),
            records_read: 0,
        }
    }

    /// Moves one packet's records (all carrying the same packet reference) in.
    fn add_packet(&mut self, records: &mut Vec<R>) {
        self.records_read += records.len() as u64;
        let repeats = primitive_root(records) as u64;
        let packet = records[0].packet();
        let (lo, hi) = records.iter().fold((u64::MAX, 0), |(lo, hi), r| {
            (lo.min(r.obt_ns()), hi.max(r.obt_ns()))
        });
        for r in records.drain(..) {
            self.held.push(r.hold(&mut self.arena));
        }
        self.packets.push(PacketSpan {
            end: self.held.len(),
            packet,
            lo,
            hi,
            repeats,
        });
    }
}

/// What the readers send.
pub(crate) enum Message {
    /// A delivery whose files opened and verified, with their size in octets;
    /// its batches and then [`Message::Done`] follow.
    Opened(u64),
    /// A delivery that cannot be read: skipped.
    Failed(DeliveryId, ProductError),
    Window(PacketBatch<Window>),
    Attitude(PacketBatch<Attitude>),
    Hk(PacketBatch<Hk>),
    /// Every record of the delivery was sent.
    Done(DeliveryId),
    /// A record failed to decode inside a verified file: the run stops.
    Error(ProductError),
}

/// The three stream kinds travel in [`Message`]s.
trait Batched: StreamRecord {
    fn wrap(b: PacketBatch<Self>) -> Message;
}

impl Batched for Window {
    fn wrap(b: PacketBatch<Self>) -> Message {
        Message::Window(b)
    }
}
impl Batched for Attitude {
    fn wrap(b: PacketBatch<Self>) -> Message {
        Message::Attitude(b)
    }
}
impl Batched for Hk {
    fn wrap(b: PacketBatch<Self>) -> Message {
        Message::Hk(b)
    }
}

/// A delivery's stream products, opened and verified (header, length, checksum)
/// before any of its records is used.
struct Inputs {
    window: ProductReader<Window>,
    attitude: ProductReader<Attitude>,
    hk: ProductReader<Hk>,
    bytes: u64,
}

impl Inputs {
    fn open(dir: &Path) -> Result<Inputs, ProductError> {
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let (wp, ap, hp) = (
            dir.join("window.mprod"),
            dir.join("attitude.mprod"),
            dir.join("hk.mprod"),
        );
        Ok(Inputs {
            window: ProductReader::open(&wp)?,
            attitude: ProductReader::open(&ap)?,
            hk: ProductReader::open(&hp)?,
            bytes: size(&wp) + size(&ap) + size(&hp),
        })
    }
}

/// One reader thread: takes the next unread delivery of `new` until none is
/// left, or the receiving side hangs up.
pub(crate) fn reader(new: &[(DeliveryId, PathBuf)], next: &AtomicUsize, tx: SyncSender<Message>) {
    loop {
        let Some((id, dir)) = new.get(next.fetch_add(1, Ordering::Relaxed)) else {
            return;
        };
        let sent = match Inputs::open(dir) {
            Err(e) => tx.send(Message::Failed(*id, e)).is_ok(),
            Ok(inputs) => {
                tx.send(Message::Opened(inputs.bytes)).is_ok()
                    && send_stream(&tx, *id, inputs.window)
                    && send_stream(&tx, *id, inputs.attitude)
                    && send_stream(&tx, *id, inputs.hk)
                    && tx.send(Message::Done(*id)).is_ok()
            }
        };
        if !sent {
            return;
        }
    }
}

/// Sends one stream file's records in batches of whole packets; false when
/// the run is to stop.
fn send_stream<R: Batched>(
    tx: &SyncSender<Message>,
    delivery: DeliveryId,
    reader: ProductReader<R>,
) -> bool {
    let mut batch = PacketBatch::<R>::new(delivery);
    let mut packet: Vec<R> = Vec::new();
    for record in reader {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(Message::Error(e));
                return false;
            }
        };
        if packet
            .first()
            .is_some_and(|p| p.packet() != record.packet())
        {
            batch.add_packet(&mut packet);
            if batch.held.len() >= BATCH
                && tx
                    .send(R::wrap(std::mem::replace(
                        &mut batch,
                        PacketBatch::new(delivery),
                    )))
                    .is_err()
            {
                return false;
            }
        }
        packet.push(record);
    }
    if !packet.is_empty() {
        batch.add_packet(&mut packet);
    }
    batch.packets.is_empty() || tx.send(R::wrap(batch)).is_ok()
}
