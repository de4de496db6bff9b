//! The packet emitter keeps packet-time order and loses nothing for any
//! arrangement of transits that respects the block contract (a transit of
//! block k starts no earlier than 25 s before the block's end), checked with
//! synthetic blocks independent of the sky and scanning law.

mod science_common;

use meridian_core::records::Window;
use meridian_sim::science::packets::{AttitudePacket, BlockOutput, Emitter, PackedTransit};
use meridian_sim::science::{NoTruth, WindowTruth};
use proptest::prelude::*;
use science_common::{PData, parse_packet};

const S: u64 = 1_000_000_000;
const BLOCK: u64 = 60 * S;

fn transit(id: u64, first_obt: u64, strips: u8) -> PackedTransit {
    let windows: Vec<Window> = (0..strips)
        .map(|s| Window {
            transit_id: id,
            strip: s,
            row: 3,
            fov: 1,
            ac: 100,
            obt_ns: first_obt + s as u64 * 4_850_000_000,
            onboard_mag: 15000,
            samples: vec![1000; 12],
            seq: 0,
            packet_obt_ns: 0,
            packet_hash: 0,
        })
        .collect();
    let mut records = Vec::new();
    meridian_telemetry::appdata::encode_windows(&mut records, &windows);
    records.drain(..2);
    PackedTransit {
        first_obt_ns: first_obt,
        transit_id: id,
        n_windows: strips as u16,
        records,
        windows,
        truth: Vec::<WindowTruth>::new(),
    }
}

fn attitude(t: u64) -> AttitudePacket {
    let samples = vec![(t, [0.0, 0.0, 0.0, 1.0])];
    let mut app_data = Vec::new();
    meridian_telemetry::appdata::encode_attitude(&mut app_data, &samples);
    AttitudePacket {
        obt_ns: t,
        app_data,
        samples,
        truth: Vec::new(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn packets_stay_in_time_order_and_all_windows_are_emitted(
        blocks in proptest::collection::vec(
            proptest::collection::vec((0u64..79_000, 1u8..=9), 0..40), 1..6),
        max_app in 600usize..5000,
    ) {
        let mut packets = Vec::new();
        let mut truth = NoTruth;
        let mut out = |p| packets.push(p);
        let mut emitter = Emitter::new(&mut out, &mut truth, max_app, [16383, 5]);
        let mut expected = Vec::new();
        let last = blocks.len() as u64 - 1;
        for (k, offsets) in (0u64..).zip(&blocks) {
            let start = 100 * BLOCK + k * BLOCK;
            // First windows from 20 s before the block to 59 s into it.
            let mut transits: Vec<PackedTransit> = offsets
                .iter()
                .enumerate()
                .map(|(i, &(ms, strips))| {
                    transit((k << 20) | i as u64, start - 20 * S + ms * 1_000_000, strips)
                })
                .collect();
            transits.sort_by_key(|t| t.first_obt_ns);
            expected.extend(transits.iter().flat_map(|t| t.windows.iter().map(|w| (w.transit_id, w.strip))));
            let attitude = (0..6).map(|i| attitude(start + i * 10 * S)).collect();
            let horizon = if k == last { u64::MAX } else { start + BLOCK - 25 * S };
            emitter
                .push_block(BlockOutput { transits, attitude, candidates: 0 }, horizon)
                .unwrap();
        }
        let stats = emitter.finish().unwrap();
        prop_assert_eq!(stats.attitude_packets, 6 * blocks.len() as u64);
        let mut got = Vec::new();
        let mut last_time = 0;
        let mut seqs = [None::<u16>; 2];
        for p in &packets {
            let parsed = parse_packet(&p.bytes);
            prop_assert!(parsed.obt_ns >= last_time, "time order");
            last_time = parsed.obt_ns;
            let which = (parsed.apid == 0x102) as usize;
            if let Some(prev) = seqs[which] {
                prop_assert_eq!(parsed.seq, (prev + 1) % 16384);
            }
            seqs[which] = Some(parsed.seq);
            if let PData::Windows(ws) = parsed.data {
                prop_assert!(parsed.app_len <= max_app);
                got.extend(ws.iter().map(|w| (w.transit_id, w.strip)));
            }
        }
        got.sort_unstable();
        expected.sort_unstable();
        prop_assert_eq!(got, expected);
    }
}
