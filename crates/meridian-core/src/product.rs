//! The product file format: one record kind per file, a self-describing header and
//! a zstd-compressed body of bincode-encoded records.
//!
//! ```text
//! offset size  field (big-endian)
//!  0      8    magic "MERIDPRD"
//!  8      2    format version (2; 1 had varint integers and is refused)
//! 10      1    record kind (RecordKind discriminant)
//! 11      1    body codec (1 = bincode 2 records, little-endian fixed-width integers,
//!              as a zstd stream of one or more frames)
//! 12      4    reserved, zero
//! 16      8    record count
//! 24      8    body length in octets
//! 32      8    xxh3-64 of the body octets
//! 40      4    low 32 bits of xxh3-64 of octets 0..40 (header check)
//! 44      4    reserved, zero
//! 48      …    body
//! ```
//!
//! Files are written under a temporary name in the target folder, fsynced and
//! renamed, so a reader never sees a partial product. The reader maps the file and
//! checks the header, length and body checksum before yielding any record, so a
//! truncated or corrupted file is an error naming the file, never wrong data.

use crate::records::{Record, RecordKind};
use memmap2::Mmap;
use std::fs::File;
use std::io::{self, BufWriter, Cursor, Read, Seek, SeekFrom, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use xxhash_rust::xxh3::{Xxh3, xxh3_64};

/// Magic number at the start of every product file.
pub const MAGIC: [u8; 8] = *b"MERIDPRD";
/// Current format version.
pub const FORMAT_VERSION: u16 = 2;
/// Header length in octets.
pub const HEADER_LEN: usize = 48;
const CODEC_BINCODE_ZSTD: u8 = 1;
/// Encoded records are compressed in frames of about this many octets: large
/// enough that frames cost nothing in ratio, small enough for a writer per chunk.
const WRITE_BATCH: usize = 256 << 10;
/// Decompressed body octets read per refill of a reader's buffer.
const READ_BLOCK: usize = 128 << 10;
/// No record is larger: a length field claiming more is corruption, not a reason
/// to keep buffering the body.
const MAX_RECORD_LEN: usize = 256 << 20;
/// Default zstd level, one of zstd's fast (negative) levels: products are
/// written once per stage and read once or twice, so compression time is
/// paid on the daily critical path. On the 1 % day this level costs 20 % less
/// of the decode stage's CPU than level 1, for files 30 % larger.
pub const DEFAULT_ZSTD_LEVEL: i32 = -4;

/// What can go wrong reading or writing a product file. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ProductError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: not a Meridian product file (bad magic)")]
    NotAProduct { path: PathBuf },
    #[error(
        "{path}: product format version {found} is not supported (this build reads {FORMAT_VERSION})"
    )]
    UnsupportedVersion { path: PathBuf, found: u16 },
    #[error("{path}: holds {found} records, expected {expected}")]
    KindMismatch {
        path: PathBuf,
        expected: RecordKind,
        found: String,
    },
    #[error("{path}: truncated: {detail}")]
    Truncated { path: PathBuf, detail: String },
    #[error("{path}: corrupted: {detail}")]
    Corrupt { path: PathBuf, detail: String },
}

impl ProductError {
    fn io(path: &Path, source: io::Error) -> Self {
        ProductError::Io {
            path: path.to_owned(),
            source,
        }
    }
    fn corrupt(path: &Path, detail: impl Into<String>) -> Self {
        ProductError::Corrupt {
            path: path.to_owned(),
            detail: detail.into(),
        }
    }
}

/// The decoded header of a product file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: RecordKind,
    pub record_count: u64,
    pub body_len: u64,
    pub body_checksum: u64,
}

impl Header {
    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..8].copy_from_slice(&MAGIC);
        h[8..10].copy_from_slice(&FORMAT_VERSION.to_be_bytes());
        h[10] = self.kind as u8;
        h[11] = CODEC_BINCODE_ZSTD;
        h[16..24].copy_from_slice(&self.record_count.to_be_bytes());
        h[24..32].copy_from_slice(&self.body_len.to_be_bytes());
        h[32..40].copy_from_slice(&self.body_checksum.to_be_bytes());
        let check = xxh3_64(&h[0..40]) as u32;
        h[40..44].copy_from_slice(&check.to_be_bytes());
        h
    }

    fn decode(path: &Path, bytes: &[u8]) -> Result<Header, ProductError> {
        if bytes.len() < MAGIC.len() || bytes[0..8] != MAGIC {
            return Err(ProductError::NotAProduct {
                path: path.to_owned(),
            });
        }
        if bytes.len() < HEADER_LEN {
            return Err(ProductError::Truncated {
                path: path.to_owned(),
                detail: format!(
                    "{} octets, shorter than the {HEADER_LEN}-octet header",
                    bytes.len()
                ),
            });
        }
        let be_u64 =
            |r: std::ops::Range<usize>| u64::from_be_bytes(bytes[r].try_into().expect("8 octets"));
        let version = u16::from_be_bytes([bytes[8], bytes[9]]);
        if version != FORMAT_VERSION {
            return Err(ProductError::UnsupportedVersion {
                path: path.to_owned(),
                found: version,
            });
        }
        let check = u32::from_be_bytes(bytes[40..44].try_into().expect("4 octets"));
        if check != xxh3_64(&bytes[0..40]) as u32 {
            return Err(ProductError::corrupt(path, "header checksum mismatch"));
        }
        let kind = RecordKind::from_u8(bytes[10]).ok_or_else(|| {
            ProductError::corrupt(path, format!("unknown record kind {}", bytes[10]))
        })?;
        if bytes[11] != CODEC_BINCODE_ZSTD {
            return Err(ProductError::corrupt(
                path,
                format!("unknown body codec {}", bytes[11]),
            ));
        }
        Ok(Header {
            kind,
            record_count: be_u64(16..24),
            body_len: be_u64(24..32),
            body_checksum: be_u64(32..40),
        })
    }
}

/// The one place that knows how records become bytes. bincode 2 is no longer
/// developed (3.0 is a `compile_error!`), so it is confined here: swapping it
/// means changing these two functions and bumping the codec byte.
mod codec {
    use serde::{Serialize, de::DeserializeOwned};

    /// Why a record could not be decoded from the bytes at hand.
    pub enum DecodeFailure {
        /// The bytes end inside the record: more are needed.
        NeedMore,
        /// The bytes are not a record of this kind.
        Invalid(String),
    }

    /// Fixed-width integers: several times cheaper to encode and decode than
    /// varints, and zstd removes the zero octets they add.
    const CONFIG: bincode::config::Configuration<
        bincode::config::LittleEndian,
        bincode::config::Fixint,
    > = bincode::config::standard().with_fixed_int_encoding();

    pub fn encode<R: Serialize>(record: &R, out: &mut Vec<u8>) -> Result<(), String> {
        bincode::serde::encode_into_std_write(record, out, CONFIG)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Decodes one record from the start of `bytes`; returns it and its length.
    pub fn decode<R: DeserializeOwned>(bytes: &[u8]) -> Result<(R, usize), DecodeFailure> {
        bincode::serde::decode_from_slice(bytes, CONFIG).map_err(|e| match e {
            bincode::error::DecodeError::UnexpectedEnd { .. } => DecodeFailure::NeedMore,
            other => DecodeFailure::Invalid(other.to_string()),
        })
    }
}

/// Counts and hashes what passes through to the file.
struct HashingWriter<W> {
    inner: W,
    hasher: Xxh3,
    written: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Where a product was written and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenProduct {
    pub path: PathBuf,
    pub header: Header,
}

/// Streams records of one kind into a product file, atomically: nothing appears
/// under the final name until [`ProductWriter::finish`] succeeds, and a writer
/// dropped without finishing removes its temporary file.
pub struct ProductWriter<R: Record> {
    path: PathBuf,
    tmp: TempFile,
    sink: HashingWriter<BufWriter<File>>,
    compressor: zstd::bulk::Compressor<'static>,
    count: u64,
    /// Encoded records not yet compressed.
    scratch: Vec<u8>,
    /// One compressed frame, reused.
    frame: Vec<u8>,
    _kind: PhantomData<fn(R)>,
}

impl<R: Record> ProductWriter<R> {
    /// Starts a product at `path` (its folder must exist) with the default level.
    pub fn create(path: impl AsRef<Path>) -> Result<Self, ProductError> {
        Self::with_level(path, DEFAULT_ZSTD_LEVEL)
    }

    /// Starts a product with a chosen zstd level.
    pub fn with_level(path: impl AsRef<Path>, level: i32) -> Result<Self, ProductError> {
        let path = path.as_ref().to_owned();
        let tmp = TempFile::create_beside(&path)?;
        let mut file = tmp
            .file
            .try_clone()
            .map_err(|e| ProductError::io(&tmp.path, e))?;
        file.write_all(&[0u8; HEADER_LEN])
            .map_err(|e| ProductError::io(&tmp.path, e))?;
        let sink = HashingWriter {
            inner: BufWriter::with_capacity(1 << 20, file),
            hasher: Xxh3::new(),
            written: 0,
        };
        let compressor =
            zstd::bulk::Compressor::new(level).map_err(|e| ProductError::io(&tmp.path, e))?;
        Ok(Self {
            path,
            tmp,
            sink,
            compressor,
            count: 0,
            scratch: Vec::with_capacity(WRITE_BATCH + (4 << 10)),
            frame: Vec::new(),
            _kind: PhantomData,
        })
    }

    /// Appends one record.
    pub fn push(&mut self, record: &R) -> Result<(), ProductError> {
        let mark = self.scratch.len();
        if let Err(e) = codec::encode(record, &mut self.scratch) {
            // Leave no partial record behind in the batch.
            self.scratch.truncate(mark);
            return Err(ProductError::corrupt(&self.path, e));
        }
        self.count += 1;
        if self.scratch.len() >= WRITE_BATCH {
            self.flush_scratch()?;
        }
        Ok(())
    }

    /// Compresses the encoded records as one zstd frame and writes it. The body
    /// is a sequence of independent frames, which any zstd stream decoder reads
    /// as one stream. One call per batch costs what the streaming encoder did
    /// (measured), and keeps frames independent of each other.
    fn flush_scratch(&mut self) -> Result<(), ProductError> {
        // An empty product still gets one (empty) frame: an empty body is not a
        // zstd stream.
        if self.scratch.is_empty() && self.sink.written > 0 {
            return Ok(());
        }
        let io = |e| ProductError::io(&self.tmp.path, e);
        self.frame.clear();
        self.frame
            .reserve(zstd::zstd_safe::compress_bound(self.scratch.len()));
        self.compressor
            .compress_to_buffer(&self.scratch[..], &mut self.frame)
            .map_err(io)?;
        self.sink.write_all(&self.frame).map_err(io)?;
        self.scratch.clear();
        Ok(())
    }

    /// Records pushed so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Completes the body, writes the header, fsyncs and renames into place.
    pub fn finish(self) -> Result<WrittenProduct, ProductError> {
        self.complete(Durability::Synced)
    }

    /// [`finish`](Self::finish) without the fsyncs, for scratch files a stage
    /// deletes itself and never trusts across a crash (sort runs, spills): the
    /// header still comes last and the rename still publishes a whole file, but
    /// nothing waits for the disk. A stage writing many runs spent most of a
    /// spill in fsyncs of files it was about to delete.
    pub fn finish_scratch(self) -> Result<WrittenProduct, ProductError> {
        self.complete(Durability::Scratch)
    }

    fn complete(mut self, durability: Durability) -> Result<WrittenProduct, ProductError> {
        self.flush_scratch()?;
        let tmp_path = self.tmp.path.clone();
        let io = |e| ProductError::io(&tmp_path, e);
        let mut sink = self.sink;
        sink.flush().map_err(io)?;
        let header = Header {
            kind: R::KIND,
            record_count: self.count,
            body_len: sink.written,
            body_checksum: sink.hasher.digest(),
        };
        let mut file = sink.inner.into_inner().map_err(|e| io(e.into_error()))?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(&header.encode()).map_err(io)?;
        self.tmp.persist(&self.path, durability)?;
        Ok(WrittenProduct {
            path: self.path.clone(),
            header,
        })
    }
}

/// Writes all of `records` to a product at `path` in one call.
pub fn write_all<'a, R: Record>(
    path: impl AsRef<Path>,
    records: impl IntoIterator<Item = &'a R>,
) -> Result<WrittenProduct, ProductError> {
    let mut w = ProductWriter::<R>::create(path)?;
    for r in records {
        w.push(r)?;
    }
    w.finish()
}

/// A product file mapped and verified, ready to stream its records.
pub struct ProductReader<R: Record> {
    path: PathBuf,
    header: Header,
    decoder: zstd::Decoder<'static, Cursor<Mmap>>,
    /// Decompressed body not yet decoded is `buf[start..end]`: records are decoded
    /// from this slice, far cheaper than bincode pulling octets through `Read`.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    body_done: bool,
    /// Octets of the mapping already given back (see [`release_mapped`]).
    released: usize,
    remaining: u64,
    failed: bool,
    _kind: PhantomData<fn() -> R>,
}

/// Mapped pages already read are given back to the kernel in steps of this
/// size, so reading a product costs resident memory of one step, not of the
/// file (a day's `match.mprod` is gigabytes at full scale).
const RELEASE_STEP: usize = 32 << 20;

/// xxh3-64 of the body (after the header), releasing the pages as it goes.
fn checksum_releasing(map: &Mmap) -> u64 {
    let body = &map[HEADER_LEN..];
    if body.len() <= RELEASE_STEP {
        return xxh3_64(body);
    }
    let mut hasher = Xxh3::new();
    for (i, piece) in body.chunks(RELEASE_STEP).enumerate() {
        hasher.update(piece);
        let from = HEADER_LEN + i * RELEASE_STEP;
        release_mapped(map, from, from + piece.len());
    }
    hasher.digest()
}

/// Drops the mapping's pages in `from..to` from this process's resident set.
/// They stay in the page cache; a later access faults them in again.
fn release_mapped(map: &Mmap, from: usize, to: usize) {
    #[cfg(unix)]
    if to > from {
        // SAFETY: the mapping is a read-only shared mapping of a published
        // product file, which nothing of ours modifies (see `open`): dropping
        // its pages cannot change what a later read of them sees, and no
        // reference into the range outlives this call's callers' reads.
        // Failure only means the pages stay resident.
        let _ = unsafe {
            map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, from, to - from)
        };
    }
}

/// Reads and checks only the header of a product file (for tools that dispatch on kind).
pub fn read_header(path: impl AsRef<Path>) -> Result<Header, ProductError> {
    let path = path.as_ref();
    let mut f = File::open(path).map_err(|e| ProductError::io(path, e))?;
    let mut buf = Vec::with_capacity(HEADER_LEN);
    Read::by_ref(&mut f)
        .take(HEADER_LEN as u64)
        .read_to_end(&mut buf)
        .map_err(|e| ProductError::io(path, e))?;
    Header::decode(path, &buf)
}

impl<R: Record> ProductReader<R> {
    /// Opens, maps and verifies a product file of kind `R`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, ProductError> {
        let path = path.as_ref().to_owned();
        let file = File::open(&path).map_err(|e| ProductError::io(&path, e))?;
        let len = file
            .metadata()
            .map_err(|e| ProductError::io(&path, e))?
            .len();
        if len < HEADER_LEN as u64 {
            let mut buf = Vec::new();
            (&file)
                .read_to_end(&mut buf)
                .map_err(|e| ProductError::io(&path, e))?;
            return Err(Header::decode(&path, &buf).err().unwrap_or_else(|| {
                ProductError::Truncated {
                    path: path.clone(),
                    detail: "shorter than its header".into(),
                }
            }));
        }
        // SAFETY: product files are written once under a temporary name and renamed
        // into place; nothing of ours modifies a published file while it is mapped.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| ProductError::io(&path, e))?;
        let header = Header::decode(&path, &map)?;
        if header.kind != R::KIND {
            return Err(ProductError::KindMismatch {
                path,
                expected: R::KIND,
                found: header.kind.to_string(),
            });
        }
        let actual_body = len - HEADER_LEN as u64;
        if actual_body < header.body_len {
            return Err(ProductError::Truncated {
                path,
                detail: format!("body has {actual_body} of {} octets", header.body_len),
            });
        }
        if actual_body > header.body_len {
            return Err(ProductError::corrupt(
                &path,
                format!(
                    "{} trailing octets after the body",
                    actual_body - header.body_len
                ),
            ));
        }
        if checksum_releasing(&map) != header.body_checksum {
            return Err(ProductError::corrupt(&path, "body checksum mismatch"));
        }
        let mut cursor = Cursor::new(map);
        cursor.set_position(HEADER_LEN as u64);
        let decoder = zstd::Decoder::with_buffer(cursor).map_err(|e| ProductError::io(&path, e))?;
        Ok(Self {
            path,
            remaining: header.record_count,
            failed: false,
            header,
            decoder,
            buf: vec![0; READ_BLOCK],
            start: 0,
            end: 0,
            body_done: false,
            released: 0,
            _kind: PhantomData,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn next_record(&mut self) -> Result<Option<R>, ProductError> {
        if self.remaining == 0 {
            return if self.start < self.end || self.refill()? > 0 {
                Err(ProductError::corrupt(
                    &self.path,
                    "more data than the header's record count",
                ))
            } else {
                Ok(None)
            };
        }
        let index = self.header.record_count - self.remaining;
        loop {
            match codec::decode::<R>(&self.buf[self.start..self.end]) {
                Ok((record, len)) => {
                    self.start += len;
                    self.remaining -= 1;
                    return Ok(Some(record));
                }
                Err(codec::DecodeFailure::NeedMore) => {
                    if self.refill()? == 0 {
                        return Err(ProductError::corrupt(
                            &self.path,
                            format!("record {index}: the body ends inside it"),
                        ));
                    }
                }
                Err(codec::DecodeFailure::Invalid(e)) => {
                    return Err(ProductError::corrupt(
                        &self.path,
                        format!("record {index}: {e}"),
                    ));
                }
            }
        }
    }

    /// Moves the undecoded rest to the front of the buffer and decompresses more
    /// after it, growing the buffer when one record fills it; returns the octets added.
    fn refill(&mut self) -> Result<usize, ProductError> {
        if self.body_done {
            return Ok(0);
        }
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        if self.end == self.buf.len() {
            if self.buf.len() >= MAX_RECORD_LEN {
                return Err(ProductError::corrupt(
                    &self.path,
                    format!("a record longer than {MAX_RECORD_LEN} octets"),
                ));
            }
            self.buf.resize(self.buf.len() * 2, 0);
        }
        let n = loop {
            match self.decoder.read(&mut self.buf[self.end..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(ProductError::corrupt(
                        &self.path,
                        format!("body does not decompress: {e}"),
                    ));
                }
            }
        };
        self.end += n;
        self.body_done = n == 0;
        let consumed = self.decoder.get_ref().position() as usize;
        if consumed - self.released >= RELEASE_STEP {
            release_mapped(self.decoder.get_ref().get_ref(), self.released, consumed);
            self.released = consumed;
        }
        Ok(n)
    }
}

impl<R: Record> Iterator for ProductReader<R> {
    type Item = Result<R, ProductError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.next_record() {
            Ok(Some(r)) => Some(Ok(r)),
            Ok(None) => None,
            Err(e) => {
                // Nothing after a corrupted record can be trusted: end here.
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Reads every record of a product file into memory.
pub fn read_all<R: Record>(path: impl AsRef<Path>) -> Result<Vec<R>, ProductError> {
    ProductReader::<R>::open(path)?.collect()
}

/// A file under a unique temporary name beside its final path; removed on drop
/// unless persisted.
struct TempFile {
    path: PathBuf,
    file: File,
    persisted: bool,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl TempFile {
    fn create_beside(target: &Path) -> Result<Self, ProductError> {
        let dir = target
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = target
            .file_name()
            .ok_or_else(|| ProductError::io(target, io::Error::other("no file name")))?;
        let unique = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp_name = format!(
            ".{}.{}-{}.tmp",
            name.to_string_lossy(),
            std::process::id(),
            unique
        );
        let path = dir.join(tmp_name);
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| ProductError::io(&path, e))?;
        Ok(Self {
            path,
            file,
            persisted: false,
        })
    }

    fn persist(&mut self, target: &Path, durability: Durability) -> Result<(), ProductError> {
        let synced = durability == Durability::Synced;
        if synced {
            self.file
                .sync_all()
                .map_err(|e| ProductError::io(&self.path, e))?;
        }
        std::fs::rename(&self.path, target).map_err(|e| ProductError::io(target, e))?;
        self.persisted = true;
        if synced {
            sync_parent(target).map_err(|e| ProductError::io(target, e))?;
        }
        Ok(())
    }
}

/// Whether a finished product must be on disk before it is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    Synced,
    Scratch,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn sync_parent(path: &Path) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
}

/// Writes `bytes` to `path` atomically (temporary name, fsync, rename, fsync of the
/// folder): for manifests, reports and anything else that must never look complete
/// when it is not.
pub fn write_file_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<(), ProductError> {
    let path = path.as_ref();
    let mut tmp = TempFile::create_beside(path)?;
    tmp.file
        .write_all(bytes)
        .map_err(|e| ProductError::io(&tmp.path, e))?;
    tmp.persist(path, Durability::Synced)
}

/// Records of a product file as JSON objects (ICD §9 field names), each with its
/// `"kind"` first, whatever the file's kind: for dumps, comparisons and tools
/// that do not care about the Rust type.
pub fn json_records(path: impl AsRef<Path>) -> Result<JsonRecords, ProductError> {
    use crate::records::*;
    let path = path.as_ref();
    let header = read_header(path)?;
    Ok(match header.kind {
        RecordKind::Window => json_iter::<Window>(path)?,
        RecordKind::Attitude => json_iter::<Attitude>(path)?,
        RecordKind::Hk => json_iter::<Hk>(path)?,
        RecordKind::UnknownPacket => json_iter::<UnknownPacket>(path)?,
        RecordKind::Quarantine => json_iter::<Quarantine>(path)?,
        RecordKind::Gap => json_iter::<Gap>(path)?,
        RecordKind::Observation => json_iter::<Observation>(path)?,
        RecordKind::Transit => json_iter::<Transit>(path)?,
        RecordKind::Match => json_iter::<Match>(path)?,
        RecordKind::HealthEvent => json_iter::<HealthEvent>(path)?,
        RecordKind::WindowTruth => json_iter::<WindowTruth>(path)?,
    })
}

/// Iterator over a product file's records as JSON objects.
pub type JsonRecords =
    Box<dyn Iterator<Item = Result<serde_json::Map<String, serde_json::Value>, ProductError>>>;

fn json_iter<R: Record>(path: &Path) -> Result<JsonRecords, ProductError> {
    let owned = path.to_owned();
    let reader = ProductReader::<R>::open(path)?;
    Ok(Box::new(reader.map(move |record| {
        let mut object = serde_json::Map::new();
        object.insert("kind".into(), R::KIND.as_str().into());
        match serde_json::to_value(&record?)
            .map_err(|e| ProductError::corrupt(&owned, e.to_string()))?
        {
            serde_json::Value::Object(fields) => object.extend(fields),
            other => {
                object.insert("value".into(), other);
            }
        }
        Ok(object)
    })))
}

/// Prints every record of a product file as JSON Lines (ICD §9), each object with
/// its `"kind"` first. Returns the number of records written.
pub fn dump_jsonl(path: impl AsRef<Path>, out: &mut dyn Write) -> Result<u64, ProductError> {
    let path = path.as_ref();
    let io = |e: io::Error| ProductError::io(path, e);
    let mut n = 0;
    for object in json_records(path)? {
        serde_json::to_writer(&mut *out, &object?).map_err(|e| io(e.into()))?;
        out.write_all(b"\n").map_err(io)?;
        n += 1;
    }
    Ok(n)
}

/// Product files (by header magic) under `path`: the file itself, or every file
/// in the folder tree, in name order so output is deterministic. Hidden entries
/// (names starting with `.`) are skipped: that is where writers keep temporary
/// files, which a crash may leave behind and which are never products.
pub fn find_products(path: impl AsRef<Path>) -> Result<Vec<PathBuf>, ProductError> {
    let path = path.as_ref();
    let meta = std::fs::metadata(path).map_err(|e| ProductError::io(path, e))?;
    if meta.is_file() {
        return Ok(vec![path.to_owned()]);
    }
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(path)
        .map_err(|e| ProductError::io(path, e))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(|e| ProductError::io(path, e))?;
    entries.sort();
    for entry in entries {
        if entry
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        {
            continue;
        }
        if entry.is_dir() {
            out.extend(find_products(&entry)?);
        } else if is_product(&entry) {
            out.push(entry);
        }
    }
    Ok(out)
}

fn is_product(path: &Path) -> bool {
    let mut magic = [0u8; 8];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == MAGIC
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::Quarantine;

    fn quarantine(len: usize) -> Quarantine {
        Quarantine {
            delivery: format!("d{len}"),
            offset: len as u64,
            length: len as u64,
            reason: "test".into(),
            bytes: (0..len).map(|i| (i * 7 + len) as u8).collect(),
        }
    }

    /// Records larger than the reader's block and the writer's batch, between
    /// small ones, exercise the buffer's growth and the refills across records.
    #[test]
    fn records_larger_than_the_read_block_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.mprod");
        let sizes = [0, 1, READ_BLOCK - 3, 5, 3 * READ_BLOCK + 11, WRITE_BATCH, 2];
        let records: Vec<Quarantine> = sizes.iter().map(|&n| quarantine(n)).collect();
        write_all(&path, &records).unwrap();
        assert_eq!(read_all::<Quarantine>(&path).unwrap(), records);
    }

    /// A header claiming more records than the body holds (with valid checksums,
    /// as a buggy writer would make) is an error naming the missing record.
    #[test]
    fn a_body_ending_inside_a_record_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.mprod");
        write_all(&path, &[quarantine(10), quarantine(20)]).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let mut header = Header::decode(&path, &bytes).unwrap();
        header.record_count = 3;
        bytes[..HEADER_LEN].copy_from_slice(&header.encode());
        std::fs::write(&path, &bytes).unwrap();
        let err = read_all::<Quarantine>(&path).unwrap_err().to_string();
        assert!(err.contains("record 2: the body ends inside it"), "{err}");
        header.record_count = 1;
        bytes[..HEADER_LEN].copy_from_slice(&header.encode());
        std::fs::write(&path, &bytes).unwrap();
        let err = read_all::<Quarantine>(&path).unwrap_err().to_string();
        assert!(
            err.contains("more data than the header's record count"),
            "{err}"
        );
    }

    /// Files of the previous format version are refused by name, not misread.
    #[test]
    fn an_older_format_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.mprod");
        write_all(&path, &[quarantine(4)]).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[8..10].copy_from_slice(&1u16.to_be_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let err = read_all::<Quarantine>(&path).unwrap_err().to_string();
        assert!(err.contains("format version 1 is not supported"), "{err}");
    }
}
