//! Delivery input (ICD §2): raw or zstd-compressed bytes (told apart by the zstd
//! magic number, never by the file name), decoded so that parsing keeps up with
//! decompression: zstd is decompressed on its own thread while the caller's
//! thread reads packets; a large raw delivery is cut at sync points and its parts
//! are read on all cores, then joined in stream order.
//!
//! Both paths give exactly the records and statistics of a plain sequential
//! [`PacketReader`] pass over the decompressed bytes.

use crate::decode::{AccountingError, DecodeSink, DecodeStats, Decoded, ItemDecoder};
use crate::mission_db::MissionDb;
use crate::reader::{PacketReader, Scanner, Step, next_sync_point};
use rayon::prelude::*;
use std::io::Read;

/// Magic number of a zstd frame (little-endian 0xFD2FB528).
pub const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// How a delivery's bytes are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Zstd,
}

/// Tells zstd (a frame, or a skippable frame 0x184D2A5?) from raw packets.
pub fn detect_compression(bytes: &[u8]) -> Compression {
    match bytes {
        [0x28, 0xB5, 0x2F, 0xFD, ..] => Compression::Zstd,
        [b0, 0x2A, 0x4D, 0x18, ..] if b0 & 0xF0 == 0x50 => Compression::Zstd,
        _ => Compression::None,
    }
}

/// Tuning of the parallel and streaming paths (results never depend on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Target length of the parts a raw delivery is cut into.
    pub segment_len: usize,
    /// Octets per decompressed block handed from the zstd thread to the reader.
    pub block_len: usize,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            segment_len: 1 << 20,
            block_len: 1 << 20,
        }
    }
}

/// Why a delivery could not be decoded. Offsets count decompressed octets.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("zstd stream breaks after {decompressed} decompressed octets: {source}")]
    Zstd {
        decompressed: u64,
        source: std::io::Error,
    },
    #[error("writing records: {0}")]
    Sink(Box<dyn std::error::Error + Send + Sync>),
    #[error(transparent)]
    Accounting(#[from] AccountingError),
}

fn sink_err<E: std::error::Error + Send + Sync + 'static>(e: E) -> DecodeError {
    DecodeError::Sink(Box::new(e))
}

/// Decodes a delivery's bytes as received (raw or zstd) into `sink`, checking
/// the byte accounting before returning.
pub fn decode_delivery<S: DecodeSink + Send>(
    bytes: &[u8],
    db: &MissionDb,
    delivery: &str,
    options: DecodeOptions,
    sink: &mut S,
) -> Result<DecodeStats, DecodeError> {
    let stats = match detect_compression(bytes) {
        Compression::None => decode_raw(bytes, db, delivery, options, sink)?,
        Compression::Zstd => decode_zstd(bytes, db, delivery, options, sink)?,
    };
    stats.check_accounting()?;
    Ok(stats)
}

/// Decodes uncompressed delivery bytes, in parallel parts when they are large.
pub fn decode_raw<S: DecodeSink + Send>(
    data: &[u8],
    db: &MissionDb,
    delivery: &str,
    options: DecodeOptions,
    sink: &mut S,
) -> Result<DecodeStats, DecodeError> {
    let mut stats = DecodeStats {
        decompressed_len: data.len() as u64,
        ..DecodeStats::default()
    };
    let threads = rayon::current_num_threads();
    if threads == 1 || data.len() <= options.segment_len {
        // One part: straight into the sink, no buffering of records.
        let mut decoder = ItemDecoder::new(db, delivery);
        for item in PacketReader::new(data) {
            decoder.decode(item, sink).map_err(sink_err)?;
        }
        stats.merge(decoder.stats());
        return Ok(stats);
    }
    let cuts = cut_points(data, options.segment_len.max(1));
    let windows: Vec<&[usize]> = cuts.windows(2).collect();
    let mut joiner = Joiner {
        data,
        db,
        delivery,
        state: Scanner::new(0),
        stats,
    };
    // While the parts of one batch decode on every core, the previous batch is
    // joined and handed to the sink on this thread.
    let mut pending: Vec<(&[usize], Part)> = Vec::new();
    for batch in windows.chunks(threads) {
        let (joined, decoded) = rayon::join(
            || joiner.join(std::mem::take(&mut pending), sink),
            || {
                batch
                    .par_iter()
                    .map(|w| decode_part(data, db, delivery, Scanner::new(w[0] as u64), w[1]))
                    .collect::<Vec<Part>>()
            },
        );
        joined?;
        pending = batch.iter().copied().zip(decoded).collect();
    }
    joiner.join(pending, sink)?;
    Ok(joiner.stats)
}

/// Joins decoded parts in stream order.
struct Joiner<'a> {
    data: &'a [u8],
    db: &'a MissionDb,
    delivery: &'a str,
    /// Where the parts joined so far really end.
    state: Scanner,
    stats: DecodeStats,
}

impl Joiner<'_> {
    fn join<S: DecodeSink>(
        &mut self,
        parts: Vec<(&[usize], Part)>,
        sink: &mut S,
    ) -> Result<(), DecodeError> {
        for (w, mut part) in parts {
            if self.state.position() != w[0] as u64 {
                // The previous part read across this cut (the sync point lay inside
                // a packet it decoded): redo this part from where it really stands.
                part = decode_part(self.data, self.db, self.delivery, self.state, w[1]);
            }
            self.state = part.end;
            self.stats.merge(&part.stats);
            part.records.drain_into(sink).map_err(sink_err)?;
        }
        Ok(())
    }
}

/// One part of a raw delivery, decoded.
struct Part {
    records: Decoded,
    stats: DecodeStats,
    end: Scanner,
}

fn decode_part(data: &[u8], db: &MissionDb, delivery: &str, from: Scanner, to: usize) -> Part {
    let mut reader = PacketReader::resume(data, 0, from, to as u64);
    let mut decoder = ItemDecoder::new(db, delivery);
    let mut records = Decoded::default();
    for item in reader.by_ref() {
        let Ok(()) = decoder.decode(item, &mut records);
    }
    Part {
        records,
        stats: decoder.into_stats(),
        end: reader.scanner(),
    }
}

/// 0, then the first sync point at or after each multiple of `segment_len`, then
/// the end: increasing, so each part starts on a CRC-valid packet.
fn cut_points(data: &[u8], segment_len: usize) -> Vec<usize> {
    let mut cuts = vec![0];
    let mut target = segment_len;
    while target < data.len() {
        match next_sync_point(data, target) {
            Some(s) => {
                cuts.push(s);
                target = s + segment_len;
            }
            None => break,
        }
    }
    cuts.push(data.len());
    cuts.dedup();
    cuts
}

/// Octets kept free before the data of each decompressed block, so the
/// undecided tail of the previous block (usually part of one packet) can be put
/// in front of the new data without copying the block.
const BLOCK_GAP: usize = 128 << 10;

/// A decompressed block: data at `vec[BLOCK_GAP..BLOCK_GAP + len]`.
struct Block {
    vec: Vec<u8>,
    len: usize,
}

/// Decodes a zstd stream (one or more frames): a helper thread decompresses
/// into blocks while this thread reads packets from them.
pub fn decode_zstd<S: DecodeSink>(
    compressed: &[u8],
    db: &MissionDb,
    delivery: &str,
    options: DecodeOptions,
    sink: &mut S,
) -> Result<DecodeStats, DecodeError> {
    let block_len = options.block_len.max(1);
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Block, DecodeError>>(3);
    let (recycle_tx, recycle_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::scope(|scope| {
        scope.spawn(move || decompress_blocks(compressed, block_len, tx, recycle_rx));
        // Owned here so that an early return hangs up on the decompressing thread
        // (its next send fails) before the scope waits for it.
        let rx = rx;
        let mut decoder = ItemDecoder::new(db, delivery);
        let mut scanner = Scanner::new(0);
        // The buffer is cur[start..end], starting at absolute offset `base`.
        let (mut cur, mut start, mut end) = (Vec::new(), 0, 0);
        let mut base = 0u64;
        let mut total = 0u64;
        let mut eof = false;
        loop {
            match scanner.step(&cur[start..end], base, eof) {
                Step::Item(item) => decoder.decode(item, sink).map_err(sink_err)?,
                Step::End => break,
                Step::NeedMore => match rx.recv() {
                    Ok(block) => {
                        let mut block = block?;
                        total += block.len as u64;
                        let tail = start + (scanner.position() - base) as usize..end;
                        base = scanner.position();
                        let data_end = BLOCK_GAP + block.len;
                        if tail.len() <= BLOCK_GAP {
                            let at = BLOCK_GAP - tail.len();
                            block.vec[at..BLOCK_GAP].copy_from_slice(&cur[tail]);
                            let old = std::mem::replace(&mut cur, block.vec);
                            let _ = recycle_tx.send(old);
                            (start, end) = (at, data_end);
                        } else {
                            // A long undecided run (garbage): copy it whole.
                            let mut joined = cur[tail].to_vec();
                            joined.extend_from_slice(&block.vec[BLOCK_GAP..data_end]);
                            let _ = recycle_tx.send(block.vec);
                            (start, end) = (0, joined.len());
                            cur = joined;
                        }
                    }
                    Err(_) => eof = true,
                },
            }
        }
        let mut stats = decoder.into_stats();
        stats.decompressed_len = total;
        Ok(stats)
    })
}

/// Decompresses `compressed` into blocks of `block_len` octets on the channel,
/// reusing vectors the reader sends back; an error ends the stream. Stops early
/// if the reader hangs up.
fn decompress_blocks(
    compressed: &[u8],
    block_len: usize,
    tx: std::sync::mpsc::SyncSender<Result<Block, DecodeError>>,
    recycled: std::sync::mpsc::Receiver<Vec<u8>>,
) {
    let mut decompressed = 0u64;
    let mut zstd = match zstd::stream::read::Decoder::with_buffer(compressed) {
        Ok(d) => d,
        Err(source) => {
            let _ = tx.send(Err(DecodeError::Zstd {
                decompressed,
                source,
            }));
            return;
        }
    };
    loop {
        let mut vec = recycled
            .try_recv()
            .ok()
            .filter(|v| v.len() == BLOCK_GAP + block_len)
            .unwrap_or_else(|| vec![0u8; BLOCK_GAP + block_len]);
        let mut filled = 0;
        while filled < block_len {
            match zstd.read(&mut vec[BLOCK_GAP + filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => {
                    let _ = tx.send(Err(DecodeError::Zstd {
                        decompressed: decompressed + filled as u64,
                        source,
                    }));
                    return;
                }
            }
        }
        decompressed += filled as u64;
        if filled == 0 || tx.send(Ok(Block { vec, len: filled })).is_err() {
            return;
        }
    }
}
