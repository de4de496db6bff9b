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
            segment_len: 8 << 20,
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
pub fn decode_delivery<S: DecodeSink>(
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
pub fn decode_raw<S: DecodeSink>(
    data: &[u8],
    db: &MissionDb,
    delivery: &str,
    options: DecodeOptions,
    sink: &mut S,
) -> Result<DecodeStats, DecodeError> {
    let cuts = cut_points(data, options.segment_len.max(1));
    let batch = 2 * rayon::current_num_threads();
    let mut stats = DecodeStats {
        decompressed_len: data.len() as u64,
        ..DecodeStats::default()
    };
    let mut state = Scanner::new(0);
    for parts in cuts.windows(2).collect::<Vec<_>>().chunks(batch) {
        let results: Vec<Part> = parts
            .par_iter()
            .map(|w| decode_part(data, db, delivery, Scanner::new(w[0] as u64), w[1]))
            .collect();
        for (w, mut part) in parts.iter().zip(results) {
            if state.position() != w[0] as u64 {
                // The previous part read across this cut (the sync point lay inside
                // a packet it decoded): redo this part from where it really stands.
                part = decode_part(data, db, delivery, state, w[1]);
            }
            state = part.end;
            stats.merge(&part.stats);
            part.records.drain_into(sink).map_err(sink_err)?;
        }
    }
    Ok(stats)
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
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Vec<u8>, DecodeError>>(4);
    std::thread::scope(|scope| {
        scope.spawn(move || decompress_blocks(compressed, block_len, tx));
        let mut decoder = ItemDecoder::new(db, delivery);
        let mut scanner = Scanner::new(0);
        let mut buf: Vec<u8> = Vec::with_capacity(2 * block_len);
        let mut base = 0u64;
        let mut total = 0u64;
        let mut eof = false;
        loop {
            match scanner.step(&buf, base, eof) {
                Step::Item(item) => decoder.decode(item, sink).map_err(sink_err)?,
                Step::End => break,
                Step::NeedMore => match rx.recv() {
                    Ok(block) => {
                        let block = block?;
                        // Keep only what the scanner has not decided yet.
                        buf.drain(..(scanner.position() - base) as usize);
                        base = scanner.position();
                        total += block.len() as u64;
                        buf.extend_from_slice(&block);
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

/// Decompresses `compressed` into blocks of `block_len` octets on the channel;
/// an error ends the stream. Stops early if the reader hangs up.
fn decompress_blocks(
    compressed: &[u8],
    block_len: usize,
    tx: std::sync::mpsc::SyncSender<Result<Vec<u8>, DecodeError>>,
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
        let mut block = vec![0u8; block_len];
        let mut filled = 0;
        while filled < block_len {
            match zstd.read(&mut block[filled..]) {
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
        block.truncate(filled);
        decompressed += filled as u64;
        if filled == 0 || tx.send(Ok(block)).is_err() {
            return;
        }
    }
}
