//! Helpers shared by the science tests: an independent minimal packet parser
//! (written from ICD §3–4, not using meridian-telemetry) and catalogue builders.
#![allow(dead_code)]

use meridian_core::Vec3;
use meridian_core::instrument::srs_from_angles;
use meridian_sim::GeneratedPacket;
use meridian_sim::science::scan::{Instant, ScanLaw};
use meridian_sim::science::*;

pub const START_NS: u64 = 520_000_123_000_000_000;

/// One window as parsed by hand from ICD §4.1.
#[derive(Debug, Clone, PartialEq)]
pub struct PWindow {
    pub transit_id: u64,
    pub strip: u8,
    pub row: u8,
    pub fov: u8,
    pub ac: u16,
    pub obt_ns: u64,
    pub onboard_mag: u16,
    pub samples: Vec<u16>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PData {
    Windows(Vec<PWindow>),
    Attitude(Vec<(u64, [f64; 4])>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub apid: u16,
    pub seq: u16,
    pub service: u8,
    pub subtype: u8,
    pub msg_counter: u16,
    pub obt_ns: u64,
    pub app_len: usize,
    pub data: PData,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

/// Parses and checks one whole packet; panics with a reason on any deviation.
pub fn parse_packet(b: &[u8]) -> Parsed {
    assert!(b.len() >= 22, "packet of {} octets", b.len());
    let id = be16(b, 0);
    assert_eq!(id >> 13, 0, "version");
    assert_eq!((id >> 12) & 1, 0, "type");
    assert_eq!((id >> 11) & 1, 1, "secondary header flag");
    let apid = id & 0x7FF;
    let seqw = be16(b, 2);
    assert_eq!(seqw >> 14, 0b11, "sequence flags");
    let seq = seqw & 0x3FFF;
    assert_eq!(be16(b, 4) as usize + 7, b.len(), "packet data length");
    let crc = crc::Crc::<u16>::new(&crc::CRC_16_IBM_3740);
    assert_eq!(crc.checksum(b"123456789"), 0x29B1);
    assert_eq!(crc.checksum(&b[..b.len() - 2]), be16(b, b.len() - 2), "CRC");
    assert_eq!(b[6] >> 4, 2, "PUS version");
    assert_eq!(b[6] & 0xF, 0, "time reference status");
    let (service, subtype) = (b[7], b[8]);
    let msg_counter = be16(b, 9);
    assert_eq!(be16(b, 11), 0, "destination");
    let coarse = u32::from_be_bytes(b[13..17].try_into().unwrap()) as u64;
    let fine = u32::from_be_bytes([0, b[17], b[18], b[19]]) as u64;
    let obt_ns = coarse * 1_000_000_000 + fine * 1_000_000_000 / (1 << 24);
    let app = &b[20..b.len() - 2];
    let n = be16(app, 0) as usize;
    let mut at = 2;
    let data = match (apid, service, subtype) {
        (0x101, 200, 1) => {
            let mut ws = Vec::with_capacity(n);
            for _ in 0..n {
                let k = app[at + 23] as usize;
                assert!((1..=32).contains(&k));
                let samples = (0..k).map(|i| be16(app, at + 24 + 2 * i)).collect();
                let w = PWindow {
                    transit_id: be64(app, at),
                    strip: app[at + 8],
                    row: app[at + 9],
                    fov: app[at + 10],
                    ac: be16(app, at + 11),
                    obt_ns: be64(app, at + 13),
                    onboard_mag: be16(app, at + 21),
                    samples,
                };
                assert!(w.strip <= 8 && (1..=7).contains(&w.row) && w.fov <= 1 && w.ac <= 1965);
                at += 24 + 2 * k;
                ws.push(w);
            }
            PData::Windows(ws)
        }
        (0x102, 200, 2) => {
            let mut s = Vec::with_capacity(n);
            for _ in 0..n {
                let t = be64(app, at);
                let q = [0, 1, 2, 3].map(|i| f64::from_bits(be64(app, at + 8 + 8 * i)));
                at += 40;
                s.push((t, q));
            }
            PData::Attitude(s)
        }
        other => panic!("unexpected APID/service {other:?}"),
    };
    assert_eq!(at, app.len(), "application data length");
    Parsed {
        apid,
        seq,
        service,
        subtype,
        msg_counter,
        obt_ns,
        app_len: app.len(),
        data,
    }
}

/// Runs a simulation and collects packets and truth.
pub fn run(sim: &ScienceSim) -> (Vec<GeneratedPacket>, TruthCollector, ScienceStats) {
    let mut packets = Vec::new();
    let mut truth = TruthCollector::default();
    let stats = sim.generate(&mut |p| packets.push(p), &mut truth).unwrap();
    (packets, truth, stats)
}

/// A tiny deterministic generator for test data (independent of the simulator).
pub struct Lcg(pub u64);
impl Lcg {
    pub fn next_f64(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Where a star of [`scan_catalogue`] was put: it crosses the centre of field
/// `fov` at `t_ns` at elevation `zeta` (radians).
#[derive(Debug, Clone, Copy)]
pub struct Placed {
    pub source_id: i64,
    pub fov: u8,
    pub t_ns: u64,
    pub zeta: f64,
}

/// A catalogue CSV of `n` stars placed so they cross a field centre at evenly
/// spread times of `[start, start + dur)` (every 25th with a high proper motion).
pub fn scan_catalogue(law: &ScanLaw, start_ns: u64, dur_s: f64, n: usize) -> (String, Vec<Placed>) {
    let mut placed = Vec::with_capacity(n);
    let mut rng = Lcg(12345);
    let mut csv = String::from("source_id,ra,dec,pmra,pmdec,ref_epoch,phot_g_mean_mag\n");
    for i in 0..n {
        let t = start_ns + ((i as f64 + 0.5) / n as f64 * dur_s * 1e9) as u64;
        let fov = (i % 2) as u8;
        let zeta = (rng.next_f64() - 0.5) * 0.68f64.to_radians();
        let phi = if fov == 0 { 53.25f64 } else { -53.25 }.to_radians();
        let u = law
            .true_attitude(Instant::at(t))
            .rotate(srs_from_angles(phi, zeta));
        let (pmra, pmdec) = if i % 25 == 0 {
            (3000.0, -2000.0)
        } else {
            (3.0, -1.5)
        };
        // Step back to the 2016.0 position approximately (the star need only be
        // near the scan); positions are then exact catalogue values.
        let epoch = meridian_core::time::julian_epoch_tt(t);
        let (ra, dec) = back_propagate(u, pmra, pmdec, epoch - 2016.0);
        let g = 8.0 + 12.5 * rng.next_f64();
        csv.push_str(&format!(
            "{},{ra:.12},{dec:.12},{pmra},{pmdec},2016.0,{g:.4}\n",
            1000 + i
        ));
        placed.push(Placed {
            source_id: 1000 + i as i64,
            fov,
            t_ns: t,
            zeta,
        });
    }
    (csv, placed)
}

fn back_propagate(u: Vec3, pmra: f64, pmdec: f64, years: f64) -> (f64, f64) {
    let (ra, dec) = u.to_radec_rad();
    let p = Vec3::new(-ra.sin(), ra.cos(), 0.0);
    let q = Vec3::new(-dec.sin() * ra.cos(), -dec.sin() * ra.sin(), dec.cos());
    let mas = std::f64::consts::PI / 180.0 / 3.6e6;
    let mu = p * (pmra * mas) + q * (pmdec * mas);
    (u - mu * years).normalized().to_radec_deg()
}

/// ICD §7 propagation, written out independently: u(t) = (r + µΔt)/|r + µΔt|.
pub fn propagate(
    ra_deg: f64,
    dec_deg: f64,
    pmra: f64,
    pmdec: f64,
    ref_epoch: f64,
    epoch: f64,
) -> Vec3 {
    let (a, d) = (ra_deg.to_radians(), dec_deg.to_radians());
    let r = Vec3::new(d.cos() * a.cos(), d.cos() * a.sin(), d.sin());
    let p = Vec3::new(-a.sin(), a.cos(), 0.0);
    let q = Vec3::new(-d.sin() * a.cos(), -d.sin() * a.sin(), d.cos());
    let mas = std::f64::consts::PI / 180.0 / 3.6e6;
    let mu = p * (pmra * mas) + q * (pmdec * mas);
    (r + mu * (epoch - ref_epoch)).normalized()
}

/// Catalogue rows parsed from CSV text: source_id → (ra, dec, pmra, pmdec, ref_epoch, g).
pub fn parse_csv(text: &str) -> std::collections::HashMap<i64, [f64; 6]> {
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "source_id,ra,dec,pmra,pmdec,ref_epoch,phot_g_mean_mag"
    );
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let v = |i: usize| f[i].parse::<f64>().unwrap();
            (f[0].parse().unwrap(), [v(1), v(2), v(3), v(4), v(5), v(6)])
        })
        .collect()
}
