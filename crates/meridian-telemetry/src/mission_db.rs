//! The mission database of ICD §6: housekeeping structures, parameter types,
//! calibrations, limits, contexts and the checks configured per parameter.
//!
//! Parsing is strict: unknown keys, duplicate names, impossible limits and
//! dangling context references are errors naming the file (and, for TOML syntax
//! and type errors, the line and column), because a silently misread limit is a
//! missed alarm.

use meridian_core::records::Value;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// A mission database file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct MissionDbError {
    pub path: PathBuf,
    pub message: String,
}

/// Wire type of a housekeeping parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    U8,
    U16,
    U32,
    I16,
    I32,
    F32,
}

impl ParamType {
    /// Octets on the wire.
    pub fn size(self) -> usize {
        match self {
            ParamType::U8 => 1,
            ParamType::U16 | ParamType::I16 => 2,
            ParamType::U32 | ParamType::I32 | ParamType::F32 => 4,
        }
    }

    /// Raw value of `bytes` (exactly `size()` octets, big-endian).
    pub fn decode(self, bytes: &[u8]) -> f64 {
        match self {
            ParamType::U8 => bytes[0] as f64,
            ParamType::U16 => u16::from_be_bytes([bytes[0], bytes[1]]) as f64,
            ParamType::I16 => i16::from_be_bytes([bytes[0], bytes[1]]) as f64,
            ParamType::U32 => u32::from_be_bytes(bytes[..4].try_into().expect("4 octets")) as f64,
            ParamType::I32 => i32::from_be_bytes(bytes[..4].try_into().expect("4 octets")) as f64,
            ParamType::F32 => f32::from_be_bytes(bytes[..4].try_into().expect("4 octets")) as f64,
        }
    }

    /// Appends `raw` in this type (saturating `as` conversion).
    pub fn encode(self, raw: f64, out: &mut Vec<u8>) {
        match self {
            ParamType::U8 => out.push(raw as u8),
            ParamType::U16 => out.extend_from_slice(&(raw as u16).to_be_bytes()),
            ParamType::I16 => out.extend_from_slice(&(raw as i16).to_be_bytes()),
            ParamType::U32 => out.extend_from_slice(&(raw as u32).to_be_bytes()),
            ParamType::I32 => out.extend_from_slice(&(raw as i32).to_be_bytes()),
            ParamType::F32 => out.extend_from_slice(&(raw as f32).to_be_bytes()),
        }
    }

    fn is_integer(self) -> bool {
        self != ParamType::F32
    }
}

/// How a raw value becomes an engineering value.
#[derive(Debug, Clone, PartialEq)]
pub enum Calibration {
    /// No calibration given: engineering value = raw value.
    Identity,
    /// `eng = Σ a_k raw^k`.
    Polynomial(Vec<f64>),
    /// Raw integer → state name.
    States(BTreeMap<i64, String>),
}

impl Calibration {
    /// Engineering value of a raw value. A raw value with no state name becomes
    /// the state `UNDEFINED(raw)`, so it is visible and never expected.
    pub fn apply(&self, raw: f64) -> Value {
        match self {
            Calibration::Identity => Value::Number(raw),
            Calibration::Polynomial(a) => {
                Value::Number(a.iter().rev().fold(0.0, |acc, &c| acc * raw + c))
            }
            Calibration::States(states) => {
                let name = (raw.fract() == 0.0)
                    .then(|| states.get(&(raw as i64)))
                    .flatten()
                    .cloned()
                    .unwrap_or_else(|| format!("UNDEFINED({raw})"));
                Value::State(name)
            }
        }
    }

    pub fn is_states(&self) -> bool {
        matches!(self, Calibration::States(_))
    }
}

/// Inclusive limits in engineering units; either side may be absent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub low: Option<f64>,
    pub high: Option<f64>,
}

impl Limits {
    /// True when `v` is within the limits (bounds inclusive, ICD §6). NaN is never within.
    pub fn contains(&self, v: f64) -> bool {
        !v.is_nan() && self.low.is_none_or(|l| v >= l) && self.high.is_none_or(|h| v <= h)
    }

    /// How far `v` lies beyond the nearer violated bound (0 when within).
    pub fn excess(&self, v: f64) -> f64 {
        let below = self.low.map_or(0.0, |l| (l - v).max(0.0));
        let above = self.high.map_or(0.0, |h| (v - h).max(0.0));
        below.max(above)
    }
}

/// The value a context compares its parameter with.
#[derive(Debug, Clone, PartialEq)]
pub enum ContextValue {
    State(String),
    Number(f64),
}

impl ContextValue {
    pub fn matches(&self, eng: &Value) -> bool {
        match (self, eng) {
            (ContextValue::State(s), Value::State(v)) => s == v,
            (ContextValue::Number(n), Value::Number(v)) => n == v,
            _ => false,
        }
    }
}

/// Limits that replace the default ones while another parameter has a value.
#[derive(Debug, Clone, PartialEq)]
pub struct Context {
    pub param: String,
    pub equals: ContextValue,
    pub warning: Option<Limits>,
    pub alarm: Option<Limits>,
}

/// One housekeeping parameter and its checks.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub name: String,
    pub ptype: ParamType,
    pub unit: Option<String>,
    pub calibration: Calibration,
    pub warning: Option<Limits>,
    pub alarm: Option<Limits>,
    /// Consecutive samples out of limits (or back in) before an event opens (closes).
    pub persistence: u32,
    pub delta: Option<f64>,
    pub stale_s: Option<f64>,
    pub frozen_s: Option<f64>,
    pub contexts: Vec<Context>,
    pub expected: Option<Vec<String>>,
}

/// One housekeeping structure: the parameters of a report, in packet order.
#[derive(Debug, Clone, PartialEq)]
pub struct Structure {
    pub sid: u16,
    pub name: String,
    pub params: Vec<Param>,
}

/// The whole mission database.
#[derive(Debug, Clone, PartialEq)]
pub struct MissionDb {
    pub structures: Vec<Structure>,
    by_sid: HashMap<u16, usize>,
    by_name: HashMap<String, (usize, usize)>,
}

impl MissionDb {
    /// Reads and validates a mission database file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, MissionDbError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| MissionDbError {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates database text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, MissionDbError> {
        let err = |message: String| MissionDbError {
            path: path.to_owned(),
            message,
        };
        let file: raw::File =
            toml::from_str(text).map_err(|e| err(e.to_string().trim_end().to_owned()))?;
        let structures = file
            .structure
            .into_iter()
            .map(raw::Structure::validate)
            .collect::<Result<Vec<_>, String>>()
            .map_err(err)?;
        Self::index(structures).map_err(err)
    }

    fn index(structures: Vec<Structure>) -> Result<Self, String> {
        let mut by_sid = HashMap::new();
        let mut by_name = HashMap::new();
        for (si, s) in structures.iter().enumerate() {
            if by_sid.insert(s.sid, si).is_some() {
                return Err(format!("structure ID {} is defined twice", s.sid));
            }
            for (pi, p) in s.params.iter().enumerate() {
                if by_name.insert(p.name.clone(), (si, pi)).is_some() {
                    return Err(format!(
                        "parameter {} is defined twice (names are unique across the database)",
                        p.name
                    ));
                }
            }
        }
        let db = MissionDb {
            structures,
            by_sid,
            by_name,
        };
        db.check_contexts()?;
        Ok(db)
    }

    fn check_contexts(&self) -> Result<(), String> {
        for p in self.params() {
            for c in &p.contexts {
                let target = self.param(&c.param).ok_or_else(|| {
                    format!(
                        "parameter {}: context refers to unknown parameter {}",
                        p.name, c.param
                    )
                })?;
                let fits = match &c.equals {
                    ContextValue::State(_) => target.calibration.is_states(),
                    ContextValue::Number(_) => !target.calibration.is_states(),
                };
                if !fits {
                    return Err(format!(
                        "parameter {}: context compares {} with a {} but it has {} values",
                        p.name,
                        c.param,
                        if target.calibration.is_states() {
                            "number"
                        } else {
                            "state name"
                        },
                        if target.calibration.is_states() {
                            "state"
                        } else {
                            "numeric"
                        },
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn structure(&self, sid: u16) -> Option<&Structure> {
        self.by_sid.get(&sid).map(|&i| &self.structures[i])
    }

    pub fn param(&self, name: &str) -> Option<&Param> {
        self.by_name
            .get(name)
            .map(|&(s, p)| &self.structures[s].params[p])
    }

    /// Every parameter, in structure then packet order.
    pub fn params(&self) -> impl Iterator<Item = &Param> {
        self.structures.iter().flat_map(|s| s.params.iter())
    }
}

/// The file as written, before validation.
mod raw {
    use super::*;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct File {
        #[serde(default)]
        pub structure: Vec<Structure>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Structure {
        sid: u16,
        name: String,
        #[serde(default)]
        param: Vec<Param>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Param {
        name: String,
        #[serde(rename = "type")]
        ptype: ParamType,
        unit: Option<String>,
        calibration: Option<Calibration>,
        warning: Option<Limits>,
        alarm: Option<Limits>,
        persistence: Option<u32>,
        delta: Option<f64>,
        stale_s: Option<f64>,
        frozen_s: Option<f64>,
        #[serde(default)]
        context: Vec<Context>,
        expected: Option<Vec<String>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Calibration {
        polynomial: Option<Vec<f64>>,
        states: Option<BTreeMap<String, String>>,
    }

    /// `[low, high]`, `{ low = … }`, `{ high = … }` or both keys.
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Limits {
        Pair([f64; 2]),
        Table { low: Option<f64>, high: Option<f64> },
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Context {
        when: When,
        warning: Option<Limits>,
        alarm: Option<Limits>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct When {
        param: String,
        equals: Equals,
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Equals {
        State(String),
        Int(i64),
        Number(f64),
    }

    impl Structure {
        pub fn validate(self) -> Result<super::Structure, String> {
            if self.param.is_empty() {
                return Err(format!(
                    "structure {} (sid {}) has no parameters",
                    self.name, self.sid
                ));
            }
            let params = self
                .param
                .into_iter()
                .map(Param::validate)
                .collect::<Result<_, _>>()?;
            Ok(super::Structure {
                sid: self.sid,
                name: self.name,
                params,
            })
        }
    }

    impl Param {
        fn validate(self) -> Result<super::Param, String> {
            let name = self.name;
            let at = |m: String| format!("parameter {name}: {m}");
            let calibration = match self.calibration {
                None => super::Calibration::Identity,
                Some(c) => c.validate(self.ptype).map_err(at)?,
            };
            let warning = self
                .warning
                .map(|l| l.validate("warning"))
                .transpose()
                .map_err(at)?;
            let alarm = self
                .alarm
                .map(|l| l.validate("alarm"))
                .transpose()
                .map_err(at)?;
            let persistence = self.persistence.unwrap_or(1);
            if persistence == 0 {
                return Err(at("persistence must be at least 1".into()));
            }
            for (key, v) in [
                ("delta", self.delta),
                ("stale_s", self.stale_s),
                ("frozen_s", self.frozen_s),
            ] {
                if v.is_some_and(|v| !(v.is_finite() && v > 0.0)) {
                    return Err(at(format!("{key} must be a positive number")));
                }
            }
            if self.expected.is_some() && !calibration.is_states() {
                return Err(at("`expected` needs a states calibration".into()));
            }
            if calibration.is_states()
                && (warning.is_some() || alarm.is_some() || self.delta.is_some())
            {
                return Err(at("numeric limits or delta on a state parameter".into()));
            }
            if let (super::Calibration::States(states), Some(expected)) =
                (&calibration, &self.expected)
                && let Some(bad) = expected.iter().find(|e| !states.values().any(|s| s == *e))
            {
                return Err(at(format!(
                    "expected state {bad:?} is not one of its states"
                )));
            }
            let contexts = self
                .context
                .into_iter()
                .map(|c| c.validate().map_err(at))
                .collect::<Result<_, _>>()?;
            Ok(super::Param {
                name,
                ptype: self.ptype,
                unit: self.unit,
                calibration,
                warning,
                alarm,
                persistence,
                delta: self.delta,
                stale_s: self.stale_s,
                frozen_s: self.frozen_s,
                contexts,
                expected: self.expected,
            })
        }
    }

    impl Calibration {
        fn validate(self, ptype: ParamType) -> Result<super::Calibration, String> {
            match (self.polynomial, self.states) {
                (Some(a), None) if !a.is_empty() && a.iter().all(|x| x.is_finite()) => {
                    Ok(super::Calibration::Polynomial(a))
                }
                (Some(_), None) => Err("polynomial needs at least one finite coefficient".into()),
                (None, Some(states)) if ptype.is_integer() => states
                    .into_iter()
                    .map(|(k, v)| {
                        k.trim()
                            .parse::<i64>()
                            .map(|k| (k, v))
                            .map_err(|_| format!("state key {k:?} is not an integer"))
                    })
                    .collect::<Result<_, _>>()
                    .map(super::Calibration::States),
                (None, Some(_)) => Err("states calibration on a floating-point parameter".into()),
                _ => Err("calibration needs exactly one of `polynomial` or `states`".into()),
            }
        }
    }

    impl Limits {
        fn validate(self, which: &str) -> Result<super::Limits, String> {
            let (low, high) = match self {
                Limits::Pair([l, h]) => (Some(l), Some(h)),
                Limits::Table { low, high } => (low, high),
            };
            if low.is_none() && high.is_none() {
                return Err(format!("{which} limits need `low` or `high`"));
            }
            if low.into_iter().chain(high).any(|x| !x.is_finite()) {
                return Err(format!("{which} limits must be finite"));
            }
            if let (Some(l), Some(h)) = (low, high)
                && l > h
            {
                return Err(format!("{which} low limit {l} is above high limit {h}"));
            }
            Ok(super::Limits { low, high })
        }
    }

    impl Context {
        fn validate(self) -> Result<super::Context, String> {
            if self.warning.is_none() && self.alarm.is_none() {
                return Err(format!("context on {} sets no limits", self.when.param));
            }
            Ok(super::Context {
                equals: match self.when.equals {
                    Equals::State(s) => ContextValue::State(s),
                    Equals::Int(i) => ContextValue::Number(i as f64),
                    Equals::Number(x) => ContextValue::Number(x),
                },
                param: self.when.param,
                warning: self
                    .warning
                    .map(|l| l.validate("context warning"))
                    .transpose()?,
                alarm: self
                    .alarm
                    .map(|l| l.validate("context alarm"))
                    .transpose()?,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ICD_EXAMPLE: &str = r#"
[[structure]]
sid = 1
name = "THERMAL"

[[structure.param]]
name = "FPA_TEMP_1"          # unique across the database
type = "u16"                 # u8 u16 u32 i16 i32 f32
unit = "K"
calibration = { polynomial = [100.0, 0.01] }     # eng = Σ a_k raw^k
warning = [160.0, 170.0]     # [low, high], engineering units; one-sided: { low = 160.0 } or { high = 170.0 }
alarm   = [155.0, 175.0]
persistence = 3              # consecutive samples out of limits before an event opens (default 1)
delta = 0.5                  # optional: |eng change| between consecutive samples above this is an event
stale_s = 120.0              # optional: longer than this without a sample is an event
frozen_s = 900.0             # optional: raw value unchanged for longer than this is an event (stuck sensor)

[[structure.param.context]]  # optional, first match wins, else the limits above
when = { param = "HTR_MODE", equals = "ECO" }
warning = [150.0, 170.0]
alarm   = [145.0, 175.0]

[[structure.param]]
name = "HTR_MODE"
type = "u8"
calibration = { states = { 0 = "OFF", 1 = "NOMINAL", 2 = "ECO" } }
expected = ["NOMINAL", "ECO"]   # any other state is an alarm
"#;

    fn parse(text: &str) -> Result<MissionDb, MissionDbError> {
        MissionDb::parse(text, Path::new("db.toml"))
    }

    #[test]
    fn parses_the_icd_example() {
        let db = parse(ICD_EXAMPLE).unwrap();
        let t = db.param("FPA_TEMP_1").unwrap();
        assert_eq!(t.ptype, ParamType::U16);
        assert_eq!(t.calibration.apply(6000.0), Value::Number(160.0));
        assert_eq!(
            t.warning,
            Some(Limits {
                low: Some(160.0),
                high: Some(170.0)
            })
        );
        assert_eq!(t.persistence, 3);
        assert_eq!(t.frozen_s, Some(900.0));
        assert_eq!(t.contexts[0].equals, ContextValue::State("ECO".into()));
        let m = db.param("HTR_MODE").unwrap();
        assert_eq!(m.calibration.apply(2.0), Value::State("ECO".into()));
        assert_eq!(
            m.calibration.apply(7.0),
            Value::State("UNDEFINED(7)".into())
        );
        assert_eq!(m.persistence, 1);
        assert_eq!(db.structure(1).unwrap().params.len(), 2);
    }

    #[test]
    fn limits_are_inclusive_and_one_sided() {
        let l = Limits {
            low: Some(1.0),
            high: None,
        };
        assert!(
            l.contains(1.0) && l.contains(1e300) && !l.contains(0.999) && !l.contains(f64::NAN)
        );
        assert_eq!(l.excess(0.5), 0.5);
        let db =
            parse(&ICD_EXAMPLE.replace("warning = [160.0, 170.0]", "warning = { high = 170.0 }"))
                .unwrap();
        assert_eq!(
            db.param("FPA_TEMP_1").unwrap().warning,
            Some(Limits {
                low: None,
                high: Some(170.0)
            })
        );
    }

    #[test]
    fn bad_databases_are_named_errors() {
        let cases = [
            (
                ICD_EXAMPLE.replace("type = \"u16\"", "type = \"u17\""),
                "u17",
            ),
            (
                ICD_EXAMPLE.replace("persistence = 3", "persistance = 3"),
                "persistance",
            ),
            (
                ICD_EXAMPLE.replace("[160.0, 170.0]", "[170.0, 160.0]"),
                "above high",
            ),
            (
                ICD_EXAMPLE.replace("param = \"HTR_MODE\"", "param = \"NOPE\""),
                "unknown parameter NOPE",
            ),
            (
                ICD_EXAMPLE.replace("name = \"HTR_MODE\"", "name = \"FPA_TEMP_1\""),
                "defined twice",
            ),
            (
                ICD_EXAMPLE.replace("[\"NOMINAL\", \"ECO\"]", "[\"NOMINAL\", \"ECHO\"]"),
                "ECHO",
            ),
            (
                ICD_EXAMPLE.replace("persistence = 3", "persistence = 0"),
                "at least 1",
            ),
            ("[[structure]\n".to_string(), "line 1"),
        ];
        for (text, needle) in cases {
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.starts_with("db.toml: "), "{e}");
            assert!(e.contains(needle), "{needle:?} not in {e}");
        }
    }

    #[test]
    fn types_round_trip_on_the_wire() {
        for (t, v) in [
            (ParamType::U8, 255.0),
            (ParamType::U16, 65535.0),
            (ParamType::I16, -32768.0),
            (ParamType::U32, 4e9),
            (ParamType::I32, -2e9),
            (ParamType::F32, 1.5),
        ] {
            let mut out = Vec::new();
            t.encode(v, &mut out);
            assert_eq!(out.len(), t.size());
            assert_eq!(t.decode(&out), v);
        }
        let mut out = Vec::new();
        ParamType::F32.encode(f64::NAN, &mut out);
        assert!(ParamType::F32.decode(&out).is_nan());
    }
}
