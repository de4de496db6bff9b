//! Exact, NaN-safe JSON form of `f64` for persisted checker state.
//!
//! serde_json writes NaN and infinities as `null` and may round a parsed float by
//! one unit in the last place; the checker's state must survive a run boundary
//! bit for bit, so floats are stored as Rust's shortest round-trip text
//! (`"172.3"`, `"NaN"`, `"inf"`).

use serde::{Deserialize, Deserializer, Serializer};

pub fn serialize<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{x:?}"))
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let text = String::deserialize(d)?;
    text.parse::<f64>()
        .map_err(|e| serde::de::Error::custom(format!("bad number {text:?}: {e}")))
}

#[cfg(test)]
mod tests {
    #[derive(serde::Serialize, serde::Deserialize)]
    struct W(#[serde(with = "super")] f64);

    #[test]
    fn every_float_round_trips_bit_for_bit() {
        for x in [
            0.1,
            -0.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE / 3.0,
            1e300,
            172.3 + f64::EPSILON * 128.0,
        ] {
            let json = serde_json::to_string(&W(x)).unwrap();
            let back: W = serde_json::from_str(&json).unwrap();
            assert_eq!(back.0.to_bits(), x.to_bits(), "{json}");
        }
    }
}
