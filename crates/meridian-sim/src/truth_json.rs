//! The window truth as JSON Lines, byte for byte what `serde_json` writes for a
//! [`WindowTruth`], without serde's per-field machinery.
//!
//! `truth/windows.jsonl` is about six times the size of the telemetry it
//! describes, so formatting it was a large share of a simulated day. Numbers
//! still go through serde_json's own [`CompactFormatter`] (so the digits are
//! serde_json's), the keys are constants, and the fields a transit's windows
//! share (flux, background, G) are formatted once per transit.

use crate::science::WindowTruth;
use serde_json::ser::{CompactFormatter, Formatter};

/// Formats window truth lines, remembering the shared fields of the last transit.
#[derive(Debug, Default)]
pub struct WindowTruthFormatter {
    /// `(flux, background, g)` bits and their formatted `,"flux":…,"background":…`
    /// and `,"g":…}` pieces.
    shared: Option<([u64; 3], Vec<u8>, Vec<u8>)>,
}

/// Appends `value` as serde_json serialises an `f64` field: `null` when not finite.
fn push_f64(out: &mut Vec<u8>, value: f64) {
    if value.is_finite() {
        // Writing into a Vec cannot fail.
        let _ = CompactFormatter.write_f64(out, value);
    } else {
        out.extend_from_slice(b"null");
    }
}

fn push_u64(out: &mut Vec<u8>, value: u64) {
    let _ = CompactFormatter.write_u64(out, value);
}

impl WindowTruthFormatter {
    /// Appends the JSON line of `t` (with its trailing newline) to `out`.
    pub fn push_line(&mut self, t: &WindowTruth, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"transit_id\":");
        push_u64(out, t.transit_id);
        out.extend_from_slice(b",\"strip\":");
        push_u64(out, t.strip.into());
        out.extend_from_slice(b",\"row\":");
        push_u64(out, t.row.into());
        out.extend_from_slice(b",\"fov\":");
        push_u64(out, t.fov.into());
        out.extend_from_slice(b",\"ac\":");
        push_u64(out, t.ac.into());
        out.extend_from_slice(b",\"obt_ns\":");
        push_u64(out, t.obt_ns);
        out.extend_from_slice(b",\"source_id\":");
        let _ = CompactFormatter.write_i64(out, t.source_id);
        out.extend_from_slice(b",\"centroid\":");
        push_f64(out, t.centroid);
        let key = [t.flux.to_bits(), t.background.to_bits(), t.g.to_bits()];
        let (_, flux_background, g) = match &mut self.shared {
            Some(s) if s.0 == key => s,
            slot => slot.insert((key, Self::flux_background(t), Self::g(t))),
        };
        out.extend_from_slice(flux_background);
        out.extend_from_slice(b",\"t_obs_ns\":");
        push_u64(out, t.t_obs_ns);
        out.extend_from_slice(b",\"ra_deg\":");
        push_f64(out, t.ra_deg);
        out.extend_from_slice(b",\"dec_deg\":");
        push_f64(out, t.dec_deg);
        out.extend_from_slice(g);
        out.push(b'\n');
    }

    fn flux_background(t: &WindowTruth) -> Vec<u8> {
        let mut s = b",\"flux\":".to_vec();
        push_f64(&mut s, t.flux);
        s.extend_from_slice(b",\"background\":");
        push_f64(&mut s, t.background);
        s
    }

    fn g(t: &WindowTruth) -> Vec<u8> {
        let mut s = b",\"g\":".to_vec();
        push_f64(&mut s, t.g);
        s.extend_from_slice(b"}");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_f64() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>(),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(-0.0),
            Just(1e-7),
            Just(1e21),
            -1e3..1e9f64,
        ]
    }

    prop_compose! {
        fn truth()(
            ids in any::<(u64, i64, u64, u64)>(),
            small in any::<(u8, u8, u8, u16)>(),
            floats in proptest::collection::vec(any_f64(), 6),
        ) -> WindowTruth {
            WindowTruth {
                transit_id: ids.0,
                strip: small.0,
                row: small.1,
                fov: small.2,
                ac: small.3,
                obt_ns: ids.2,
                source_id: ids.1,
                centroid: floats[0],
                flux: floats[1],
                background: floats[2],
                t_obs_ns: ids.3,
                ra_deg: floats[3],
                dec_deg: floats[4],
                g: floats[5],
            }
        }
    }

    proptest! {
        #[test]
        fn lines_equal_serde_json_byte_for_byte(
            ts in proptest::collection::vec(truth(), 1..8),
            repeat in 1usize..4,
        ) {
            let mut f = WindowTruthFormatter::default();
            let (mut ours, mut reference) = (Vec::new(), Vec::new());
            // Repeated transits exercise the shared-field cache.
            for t in ts.iter().flat_map(|t| std::iter::repeat_n(t, repeat)) {
                f.push_line(t, &mut ours);
                serde_json::to_writer(&mut reference, t).unwrap();
                reference.push(b'\n');
            }
            prop_assert_eq!(String::from_utf8(ours).unwrap(), String::from_utf8(reference).unwrap());
        }
    }
}
