//! Decoding against known truth: clean streams decode exactly; streams with
//! injected bit flips, garbage, duplicated spans and truncation lose no intact
//! packet, invent none, and balance the byte accounting; the parallel and zstd
//! paths agree with a plain sequential pass.

mod common;

use common::{TruthPacket, db, faulty_stream, packets};
use meridian_telemetry::decode::{Decoded, ItemDecoder};
use meridian_telemetry::input::{DecodeOptions, decode_delivery, decode_raw, decode_zstd};
use meridian_telemetry::reader::{Item, PacketReader};
use proptest::prelude::*;
use std::collections::HashMap;

fn concat(ps: &[TruthPacket]) -> Vec<u8> {
    ps.iter().flat_map(|p| p.bytes.iter().copied()).collect()
}

fn decode_all(
    bytes: &[u8],
    options: DecodeOptions,
) -> (Decoded, meridian_telemetry::decode::DecodeStats) {
    let db = db();
    let mut out = Decoded::default();
    let stats = decode_delivery(bytes, &db, "d.tm", options, &mut out).unwrap();
    (out, stats)
}

fn sequential() -> DecodeOptions {
    DecodeOptions {
        segment_len: usize::MAX,
        ..DecodeOptions::default()
    }
}

#[test]
fn clean_stream_decodes_every_record_exactly() {
    let ps = packets(7, 400);
    let bytes = concat(&ps);
    let (out, stats) = decode_all(&bytes, sequential());
    let mut want = Decoded::default();
    for p in &ps {
        want.windows.extend(p.records.windows.iter().cloned());
        want.attitude.extend(p.records.attitude.iter().cloned());
        want.hk.extend(p.records.hk.iter().cloned());
    }
    assert_eq!(out.windows, want.windows);
    assert_eq!(out.attitude.len(), want.attitude.len());
    for (a, b) in out.attitude.iter().zip(&want.attitude) {
        assert_eq!(
            (a.obt_ns, a.q.map(f64::to_bits)),
            (b.obt_ns, b.q.map(f64::to_bits))
        );
        assert_eq!(a.packet_hash, b.packet_hash);
    }
    assert_eq!(out.hk, want.hk);
    assert!(out.quarantine.is_empty(), "{:?}", out.quarantine);
    let unknown: Vec<&TruthPacket> = ps.iter().filter(|p| p.unknown).collect();
    assert_eq!(out.unknown_packets.len(), unknown.len());
    let mut offset = 0;
    let offsets: HashMap<usize, u64> = ps
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let o = offset;
            offset += p.bytes.len() as u64;
            (i, o)
        })
        .collect();
    for (u, (i, p)) in out
        .unknown_packets
        .iter()
        .zip(ps.iter().enumerate().filter(|(_, p)| p.unknown))
    {
        assert_eq!(u.bytes, p.bytes);
        assert_eq!(u.apid, p.apid);
        assert_eq!(u.offset, offsets[&i]);
        assert_eq!(u.delivery, "d.tm");
        assert!(u.service.is_some() && u.obt_ns.is_some());
    }
    let idle = ps.iter().filter(|p| p.apid == 0x7FF).count() as u64;
    assert_eq!(stats.idle_packets, idle);
    assert_eq!(stats.packets, ps.len() as u64 - idle);
    assert_eq!(stats.decompressed_len, bytes.len() as u64);
    assert_eq!(stats.quarantined_bytes, 0);
    stats.check_accounting().unwrap();
}

#[test]
fn crc_valid_packet_of_unknown_apid_is_kept_with_its_header_fields() {
    let mut bytes = Vec::new();
    let sec = meridian_telemetry::SecondaryHeader::new(17, 2, 9, 5_000_000_000);
    meridian_telemetry::packet::encode_packet(&mut bytes, 0x3AB, 77, &sec, b"hello").unwrap();
    let (out, stats) = decode_all(&bytes, sequential());
    assert_eq!(out.unknown_packets.len(), 1);
    let u = &out.unknown_packets[0];
    assert_eq!(
        (u.apid, u.service, u.subtype, u.seq, u.obt_ns, u.offset),
        (0x3AB, Some(17), Some(2), 77, Some(5_000_000_000), 0)
    );
    assert_eq!(u.bytes, bytes);
    assert_eq!(stats.unknown_packets, 1);
    assert_eq!(stats.packets_per_apid["0x3ab"], 1);
}

#[test]
fn malformed_application_data_is_quarantined_whole_with_its_reason() {
    let mut bytes = Vec::new();
    let sec = meridian_telemetry::SecondaryHeader::new(200, 1, 1, 1_000_000_000);
    // Claims 5 windows, carries none.
    meridian_telemetry::packet::encode_packet(&mut bytes, 0x101, 1, &sec, &[0, 5]).unwrap();
    let first = bytes.len();
    let sec = meridian_telemetry::SecondaryHeader::new(3, 25, 2, 1_000_000_000);
    meridian_telemetry::packet::encode_packet(&mut bytes, 0x201, 2, &sec, &[0, 99, 1, 2]).unwrap();
    let (out, stats) = decode_all(&bytes, sequential());
    assert_eq!(out.quarantine.len(), 2);
    let q = &out.quarantine[0];
    assert_eq!((q.offset, q.length as usize), (0, first));
    assert!(
        q.reason
            .starts_with("malformed_application_data: application data ends"),
        "{}",
        q.reason
    );
    assert_eq!(q.bytes, bytes[..first]);
    assert!(out.quarantine[1].reason.contains("structure ID 99"));
    assert_eq!(stats.malformed_packets, 2);
    assert_eq!(stats.packets, 0);
    stats.check_accounting().unwrap();
}

#[test]
fn zstd_multi_frame_stream_decodes_like_raw_and_broken_stream_names_offset() {
    let ps = packets(3, 300);
    let bytes = concat(&ps);
    let half = bytes.len() / 2;
    let mut z = zstd::encode_all(&bytes[..half], 3).unwrap();
    z.extend(zstd::encode_all(&bytes[half..], 3).unwrap());
    let small = DecodeOptions {
        block_len: 1000,
        ..sequential()
    };
    assert_eq!(decode_all(&z, small), decode_all(&bytes, sequential()));
    let broken = &z[..z.len() * 3 / 4];
    let db = db();
    let err = decode_delivery(broken, &db, "b.tm.zst", small, &mut Decoded::default())
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("zstd stream breaks after "), "{err}");
}

/// What a faulty stream must decode into, checked item by item.
fn check_recovery(seed: u64, n: usize, rate: u64) -> Result<(), TestCaseError> {
    let ps = packets(seed, n);
    let stream = faulty_stream(seed, &ps, rate);
    let truth: HashMap<&[u8], &TruthPacket> = ps.iter().map(|p| (&p.bytes[..], p)).collect();
    let db = db();
    let mut decoder = ItemDecoder::new(&db, "f.tm");
    let mut found = HashMap::new();
    let mut next = 0u64;
    for item in PacketReader::new(&stream.bytes) {
        prop_assert_eq!(item.offset(), next, "items tile the stream");
        next += item.len() as u64;
        let mut records = Decoded::default();
        let Ok(()) = decoder.decode(item, &mut records);
        if let Item::Packet(p) = item {
            let t = truth.get(p.bytes);
            prop_assert!(t.is_some(), "invented packet at {}", p.offset);
            let t = t.unwrap();
            prop_assert_eq!(&records.windows, &t.records.windows);
            prop_assert_eq!(&records.hk, &t.records.hk);
            prop_assert_eq!(records.attitude.len(), t.records.attitude.len());
            prop_assert_eq!(records.unknown_packets.len(), t.unknown as usize);
            found.insert(p.offset as usize, p.bytes.len());
        }
    }
    prop_assert_eq!(next, stream.bytes.len() as u64);
    for &(offset, len) in &stream.intact {
        prop_assert_eq!(
            found.get(&offset),
            Some(&len),
            "intact packet at {} lost",
            offset
        );
    }
    let mut stats = decoder.into_stats();
    stats.decompressed_len = stream.bytes.len() as u64;
    prop_assert!(stats.check_accounting().is_ok());
    Ok(())
}

/// The parallel raw path and the streamed zstd path equal a sequential pass.
fn check_paths_agree(
    seed: u64,
    n: usize,
    segment: usize,
    block: usize,
) -> Result<(), TestCaseError> {
    let ps = packets(seed, n);
    let stream = faulty_stream(seed, &ps, 15);
    let db = db();
    let seq = decode_all(&stream.bytes, sequential());
    let mut par = Decoded::default();
    let opts = DecodeOptions {
        segment_len: segment,
        block_len: block,
    };
    let par_stats = decode_raw(&stream.bytes, &db, "d.tm", opts, &mut par).unwrap();
    prop_assert_eq!(&(par, par_stats), &seq);
    let z = zstd::encode_all(&stream.bytes[..], 1).unwrap();
    let mut zs = Decoded::default();
    let z_stats = decode_zstd(&z, &db, "d.tm", opts, &mut zs).unwrap();
    prop_assert_eq!(&(zs, z_stats), &seq);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn faults_lose_no_intact_packet_and_accounting_balances(seed in any::<u64>(), n in 1usize..120, rate in 0u64..40) {
        check_recovery(seed, n, rate)?;
    }

    #[test]
    fn parallel_and_streamed_decoding_match_sequential(seed in any::<u64>(), n in 1usize..150, segment in 64usize..5000, block in 1usize..3000) {
        check_paths_agree(seed, n, segment, block)?;
    }
}

#[test]
fn heavy_faults_at_fixed_seeds() {
    for seed in 0..20 {
        let s = faulty_stream(seed, &packets(seed, 300), 60);
        assert!(s.flipped > 0 && s.garbage_runs > 0 && s.duplicated_spans > 0);
        assert!(s.intact.len() > 100);
        check_recovery(seed, 300, 60).unwrap();
    }
}

#[test]
fn long_garbage_runs_across_zstd_blocks_decode_like_raw() {
    let ps = packets(11, 200);
    let mut bytes = concat(&ps[..100]);
    // Longer than a quarantine span and than the gap kept before each block.
    bytes.extend(common::Rng(3).bytes(1_300_000));
    bytes.extend(concat(&ps[100..]));
    let z = zstd::encode_all(&bytes[..], 1).unwrap();
    let small = DecodeOptions {
        block_len: 50_000,
        ..sequential()
    };
    let (out, stats) = decode_all(&z, small);
    assert_eq!(
        (out.clone(), stats.clone()),
        decode_all(&bytes, sequential())
    );
    assert_eq!(out.quarantine.len(), 2);
    assert_eq!(stats.garbage_bytes, 1_300_000);
}

#[test]
fn a_cut_at_a_packet_nested_inside_another_is_redone_from_the_real_boundary() {
    use meridian_telemetry::SecondaryHeader;
    use meridian_telemetry::packet::encode_packet;
    let ps = packets(21, 60);
    let mut bytes = concat(&ps[..30]);
    let outer_start = bytes.len();
    // An unknown packet whose application data is itself a whole valid packet.
    let inner = ps.iter().find(|p| p.apid == 0x101).unwrap().bytes.clone();
    let sec = SecondaryHeader::new(9, 9, 0, 1_000_000_000);
    encode_packet(&mut bytes, 0x300, 0, &sec, &inner).unwrap();
    bytes.extend(concat(&ps[30..]));
    let split = DecodeOptions {
        segment_len: outer_start + 1,
        block_len: 4096,
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let (par, seq) = pool.install(|| (decode_all(&bytes, split), decode_all(&bytes, sequential())));
    assert_eq!(par, seq);
    // The nested packet is part of the outer one, not decoded on its own.
    assert_eq!(
        seq.0.unknown_packets.len(),
        1 + ps.iter().filter(|p| p.unknown).count()
    );
    assert_eq!(
        seq.0.unknown_packets[ps[..30].iter().filter(|p| p.unknown).count()].offset,
        outer_start as u64
    );
}

/// A sink that fails after a number of records, like a full disk.
struct FailingSink(usize);

#[derive(Debug, thiserror::Error)]
#[error("disk full")]
struct DiskFull;

impl FailingSink {
    fn take(&mut self) -> Result<(), DiskFull> {
        self.0 = self.0.checked_sub(1).ok_or(DiskFull)?;
        Ok(())
    }
}

impl meridian_telemetry::decode::DecodeSink for FailingSink {
    type Error = DiskFull;
    fn window(&mut self, _: meridian_core::records::Window) -> Result<(), DiskFull> {
        self.take()
    }
    fn attitude(&mut self, _: meridian_core::records::Attitude) -> Result<(), DiskFull> {
        self.take()
    }
    fn hk(&mut self, _: meridian_core::records::Hk) -> Result<(), DiskFull> {
        self.take()
    }
    fn unknown_packet(&mut self, _: meridian_core::records::UnknownPacket) -> Result<(), DiskFull> {
        self.take()
    }
    fn quarantine(&mut self, _: meridian_core::records::Quarantine) -> Result<(), DiskFull> {
        self.take()
    }
}

#[test]
fn a_failing_sink_stops_decoding_with_its_error_on_every_path() {
    let bytes = concat(&packets(5, 400));
    let z = zstd::encode_all(&bytes[..], 1).unwrap();
    let db = db();
    let opts = DecodeOptions {
        segment_len: 3000,
        block_len: 500,
    };
    for input in [&bytes[..], &z[..]] {
        let err = decode_delivery(input, &db, "d.tm", opts, &mut FailingSink(10))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "writing records: disk full");
    }
}

/// Garbage can hold a plausible header whose declared length ends where the
/// CRC-16 happens to match (about one plausible header in 65 536): such a false
/// packet must not swallow the intact packets inside it. Built here as the worst
/// case, a CRC-valid packet whose data is other packets, right after garbage.
#[test]
fn after_garbage_a_packet_holding_packets_is_no_sync_point() {
    use meridian_telemetry::SecondaryHeader;
    use meridian_telemetry::packet::encode_packet;
    let ps: Vec<TruthPacket> = packets(5, 40)
        .into_iter()
        .filter(|p| p.apid != 0x7FF)
        .collect();
    let inner = concat(&ps[10..13]);
    let mut bytes = concat(&ps[..10]);
    bytes.extend([0xFFu8; 7]); // garbage: no plausible header starts in it
    let outer_start = bytes.len();
    let sec = SecondaryHeader::new(9, 9, 0, 1_000_000_000);
    encode_packet(&mut bytes, 0x300, 0, &sec, &inner).unwrap();
    bytes.extend(concat(&ps[13..]));
    let (out, stats) = decode_all(&bytes, sequential());
    // Every real packet decodes, the three inside the false one included; the
    // false one's header and trailer are quarantined, nothing is lost.
    let expected: usize = ps.iter().map(|p| p.records.windows.len()).sum();
    assert_eq!(out.windows.len(), expected);
    assert!(
        out.unknown_packets
            .iter()
            .all(|u| u.offset != outer_start as u64)
    );
    assert!(
        out.quarantine
            .iter()
            .any(|q| q.offset == (outer_start - 7) as u64)
    );
    stats.check_accounting().unwrap();
    assert_eq!(
        decode_all(&bytes, sequential()),
        decode_all(
            &bytes,
            DecodeOptions {
                segment_len: 64,
                block_len: 97
            }
        )
    );
}
