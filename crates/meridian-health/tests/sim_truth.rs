//! Against the simulator's independently derived truth: every injected
//! housekeeping anomaly is reported with the right parameter, check, severity,
//! times, worst value and sample count, no non-event is reported, and nothing
//! else is (precision and recall 1.0). Packets go straight from the simulator to
//! `hk` records (decode and order are tested in their own crates).

use meridian_core::records::{HealthEvent, Hk};
use meridian_health::HkChecker;
use meridian_sim::PacketContent;
use meridian_sim::hk::{HkConfig, HkSim};
use std::collections::BTreeSet;

fn records(sim: &mut HkSim) -> Vec<Hk> {
    let db = sim.db().clone();
    let mut out = Vec::new();
    for packet in sim.by_ref() {
        let PacketContent::Housekeeping { sid, raw } = packet.content else {
            continue;
        };
        let structure = db.structure(sid).expect("known structure");
        for (p, &r) in structure.params.iter().zip(&raw) {
            out.push(Hk {
                obt_ns: packet.obt_ns,
                sid,
                param: p.name.clone(),
                raw: r,
                eng: p.calibration.apply(r),
                seq: packet.seq,
                packet_obt_ns: packet.obt_ns,
                packet_hash: 0,
            });
        }
    }
    // The ordered chunks' order: time, structure, parameter name.
    out.sort_by(|a, b| (a.obt_ns, a.sid, &a.param).cmp(&(b.obt_ns, b.sid, &b.param)));
    out
}

type Key = (String, String, String, u64, Option<u64>, String, u64);

fn key(e: &HealthEvent) -> Key {
    (
        e.param.clone(),
        e.check.clone(),
        format!("{:?}", e.severity),
        e.start_obt_ns,
        e.end_obt_ns,
        format!("{:?}", e.worst),
        e.samples,
    )
}

#[test]
fn every_simulated_anomaly_and_nothing_else() {
    for seed in [1u64, 2] {
        let start = 520_560_000_000_000_000;
        let mut sim = HkSim::new(seed, start, 86_400.0, &HkConfig::default()).unwrap();
        let hk = records(&mut sim);
        let db = sim.db().clone();
        let mut checker = HkChecker::new(&db, None);
        for chunk in hk.chunk_by(|a, b| a.obt_ns / 60_000_000_000 == b.obt_ns / 60_000_000_000) {
            checker.feed(chunk);
        }
        let end = checker.end_of_data_ns().unwrap();
        let found: BTreeSet<Key> = checker.finish().events().iter().map(key).collect();
        let truth = sim.truth(end).unwrap();
        assert!(
            truth.events.len() >= 8,
            "seed {seed}: too little truth to test"
        );
        let expected: BTreeSet<Key> = truth
            .events
            .iter()
            .map(|t| {
                key(&HealthEvent {
                    param: t.param.clone(),
                    check: t.check.clone(),
                    severity: t.severity,
                    start_obt_ns: t.start_obt_ns,
                    end_obt_ns: t.end_obt_ns,
                    worst: t.worst.clone(),
                    samples: t.samples,
                    message: String::new(),
                })
            })
            .collect();
        println!(
            "seed {seed}: {} truth events, {} non-events",
            expected.len(),
            truth.non_events.len()
        );
        let missed: Vec<_> = expected.difference(&found).collect();
        let extra: Vec<_> = found.difference(&expected).collect();
        assert!(
            missed.is_empty() && extra.is_empty(),
            "seed {seed}\nmissed {missed:#?}\nextra {extra:#?}"
        );
        for n in &truth.non_events {
            assert!(
                !found.iter().any(|f| f.0 == n.param
                    && f.1 == n.check
                    && f.3 <= n.end_obt_ns
                    && f.4.is_none_or(|e| e >= n.start_obt_ns)),
                "seed {seed}: non-event reported: {n:?}"
            );
        }
    }
}
