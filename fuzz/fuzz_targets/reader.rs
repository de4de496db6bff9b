//! Fuzz target: the packet reader and record decoder on arbitrary bytes.
//!
//! Checks, beyond "no panic": items tile the input exactly (accounting), every
//! packet item has a matching CRC, and reading the bytes streamed in chunks (size
//! from the first input byte) gives the same items as reading the whole slice.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meridian_telemetry::MissionDb;
use meridian_telemetry::decode::{Decoded, ItemDecoder};
use meridian_telemetry::reader::{Item, PacketReader, Scanner, Step};
use std::sync::OnceLock;

const DB: &str = r#"
[[structure]]
sid = 1
name = "T"
[[structure.param]]
name = "A"
type = "u16"
calibration = { polynomial = [1.0, 0.5] }
[[structure.param]]
name = "B"
type = "u8"
calibration = { states = { 0 = "OFF", 1 = "ON" } }
"#;

fn db() -> &'static MissionDb {
    static DBC: OnceLock<MissionDb> = OnceLock::new();
    DBC.get_or_init(|| MissionDb::parse(DB, std::path::Path::new("fuzz.toml")).unwrap())
}

fn summary(i: Item<'_>) -> (u64, usize, u8) {
    let tag = match i {
        Item::Packet(_) => 0,
        Item::Idle { .. } => 1,
        Item::Quarantine(s) => 2 + s.reason as u8,
    };
    (i.offset(), i.len(), tag)
}

fuzz_target!(|input: &[u8]| {
    let (chunk, data) = match input.split_first() {
        Some((c, rest)) => (*c as usize + 1, rest),
        None => return,
    };
    let mut next = 0u64;
    let mut whole = Vec::new();
    let mut decoder = ItemDecoder::new(db(), "fuzz.tm");
    let mut records = Decoded::default();
    for item in PacketReader::new(data) {
        assert_eq!(item.offset(), next, "items tile the input");
        assert!(!item.is_empty());
        next += item.len() as u64;
        if let Item::Packet(p) = item {
            let n = p.bytes.len();
            let crc = meridian_telemetry::crc::crc16(&p.bytes[..n - 2]);
            assert_eq!(crc.to_be_bytes(), [p.bytes[n - 2], p.bytes[n - 1]]);
        }
        whole.push(summary(item));
        let Ok(()) = decoder.decode(item, &mut records);
    }
    assert_eq!(next, data.len() as u64);
    let mut stats = decoder.into_stats();
    stats.decompressed_len = data.len() as u64;
    stats.check_accounting().unwrap();

    let mut scanner = Scanner::new(0);
    let mut buf = Vec::new();
    let (mut base, mut fed) = (0u64, 0usize);
    let mut streamed = Vec::new();
    loop {
        match scanner.step(&buf, base, fed == data.len()) {
            Step::Item(i) => streamed.push(summary(i)),
            Step::End => break,
            Step::NeedMore => {
                buf.drain(..(scanner.position() - base) as usize);
                base = scanner.position();
                let end = (fed + chunk).min(data.len());
                buf.extend_from_slice(&data[fed..end]);
                fed = end;
            }
        }
    }
    assert_eq!(streamed, whole);
});
