//! The simulated mission database (ICD §6 TOML) and the natural behaviour of each
//! parameter it lists.
//!
//! The database text is fixed (not seed-dependent) so that every simulated day
//! of a mission shares it. Natural behaviour is designed to stay far from every
//! check: values live in a band well inside the warning limits, bounded noise
//! keeps every change between samples (even across the longest run of lost
//! packets the downlink may cause) far below `delta`, and parameters with a
//! `frozen_s` check never repeat one of their last [`NUDGE_DEPTH`] raw values.

/// How many previous raw values a frozen-checked parameter must differ from.
/// The downlink never loses more than `NUDGE_DEPTH - 1` consecutive reports of
/// one structure, so consecutive *received* samples always differ.
pub const NUDGE_DEPTH: usize = 3;

/// The mission database written to `mission_db.toml`.
pub const MISSION_DB_TOML: &str = r#"# Meridian mission database (ICD §6), as written by meridian-sim.
# Structures list their parameters in packet order.

[[structure]]
sid = 1
name = "THERMAL"

[[structure.param]]
name = "FPA_TEMP_1"
type = "u16"
unit = "K"
calibration = { polynomial = [100.0, 0.01] }
warning = [160.0, 170.0]
alarm = [155.0, 175.0]
persistence = 3
stale_s = 120.0
frozen_s = 600.0

[[structure.param.context]]
when = { param = "HTR_MODE", equals = "ECO" }
warning = [150.0, 170.0]
alarm = [145.0, 175.0]

[[structure.param]]
name = "FPA_TEMP_2"
type = "u16"
unit = "K"
calibration = { polynomial = [100.0, 0.01] }
warning = [160.0, 170.0]
alarm = [155.0, 175.0]
persistence = 2
frozen_s = 240.0

[[structure.param]]
name = "MIRROR_TEMP"
type = "i16"
unit = "degC"
calibration = { polynomial = [0.0, 0.01] }
warning = [15.0, 25.0]
alarm = [10.0, 30.0]
delta = 0.5
frozen_s = 600.0

[[structure.param]]
name = "HTR_MODE"
type = "u8"
calibration = { states = { 0 = "OFF", 1 = "NOMINAL", 2 = "ECO" } }
expected = ["NOMINAL", "ECO"]
stale_s = 120.0

[[structure.param]]
name = "HTR_CURRENT"
type = "u16"
unit = "A"
calibration = { polynomial = [0.0, 0.001] }
warning = { high = 3.0 }
alarm = { high = 3.5 }

[[structure]]
sid = 2
name = "POWER"

[[structure.param]]
name = "BUS_VOLTAGE"
type = "u16"
unit = "V"
calibration = { polynomial = [0.0, 0.001] }
warning = [27.0, 29.5]
alarm = [26.5, 30.0]
delta = 0.3
stale_s = 120.0
frozen_s = 900.0

[[structure.param]]
name = "BUS_CURRENT"
type = "u16"
unit = "A"
calibration = { polynomial = [0.0, 0.001] }
warning = [6.0, 18.0]
alarm = [4.0, 20.0]
stale_s = 120.0

[[structure.param]]
name = "BATTERY_TEMP"
type = "i16"
unit = "degC"
calibration = { polynomial = [0.0, 0.01] }
warning = [0.0, 35.0]
alarm = [-5.0, 40.0]
persistence = 2
stale_s = 120.0

[[structure.param]]
name = "BATTERY_SOC"
type = "f32"
unit = "%"
warning = { low = 70.0 }
alarm = { low = 50.0 }

[[structure]]
sid = 3
name = "DETECTOR"

[[structure.param]]
name = "CCD_TEMP_AF"
type = "i16"
unit = "degC"
calibration = { polynomial = [0.0, 0.01] }
warning = [-115.0, -105.0]
alarm = [-120.0, -100.0]
persistence = 3
delta = 0.5
stale_s = 60.0
frozen_s = 600.0

[[structure.param]]
name = "VIDEO_OFFSET_AF"
type = "u16"
unit = "ADU"
warning = [990.0, 1010.0]
alarm = [980.0, 1020.0]
persistence = 5

[[structure.param]]
name = "SEU_COUNT"
type = "u32"
unit = "events"

[[structure.param]]
name = "PEM_VOLTAGE"
type = "f32"
unit = "V"
warning = [4.8, 5.2]
alarm = [4.7, 5.3]

[[structure]]
sid = 4
name = "MODES"

[[structure.param]]
name = "AOCS_MODE"
type = "u8"
calibration = { states = { 0 = "SAFE", 1 = "NORMAL", 2 = "SLEW" } }
expected = ["NORMAL"]

[[structure.param]]
name = "PAYLOAD_MODE"
type = "u8"
calibration = { states = { 0 = "OFF", 1 = "STANDBY", 2 = "OBSERVING", 3 = "CALIBRATION" } }
expected = ["OBSERVING", "CALIBRATION"]
persistence = 2
stale_s = 120.0

[[structure.param]]
name = "SCAN_RATE_ERR"
type = "f32"
unit = "mas/s"
warning = [-20.0, 20.0]
alarm = [-40.0, 40.0]

[[structure]]
sid = 5
name = "STAR_TRACKER"

[[structure.param]]
name = "STR_TEMP"
type = "i16"
unit = "degC"
calibration = { polynomial = [0.0, 0.01] }
warning = [5.0, 30.0]
alarm = [0.0, 35.0]
stale_s = 60.0

[[structure.param]]
name = "STR_STARS"
type = "u8"
unit = "stars"
warning = { low = 3.0 }
stale_s = 60.0
"#;

/// Sampling period of each structure, seconds (indexed by sid − 1).
pub const PERIOD_S: [u64; 5] = [8, 16, 10, 12, 10];

/// Natural behaviour of one parameter.
#[derive(Debug, Clone, Copy)]
pub enum Model {
    /// `base + amp · sin(2π t / 1 day + phase) + uniform(±noise)`, clamped to
    /// `band` (engineering units).
    Analog {
        base: f64,
        daily_amp: f64,
        noise: f64,
        band: (f64, f64),
    },
    /// A constant state (raw value).
    State(f64),
    /// A counter that grows by Poisson-like increments (`rate` per second).
    Counter { rate_per_s: f64 },
    /// A small integer drawn uniformly from `lo..=hi` each sample.
    Integer { lo: u32, hi: u32 },
}

/// The natural model of parameter `name`.
pub fn model(name: &str) -> Model {
    let analog = |base, daily_amp, noise, band| Model::Analog {
        base,
        daily_amp,
        noise,
        band,
    };
    match name {
        "FPA_TEMP_1" => analog(164.5, 0.4, 0.04, (163.5, 165.5)),
        "FPA_TEMP_2" => analog(164.8, 0.4, 0.04, (163.8, 165.8)),
        "MIRROR_TEMP" => analog(20.0, 0.6, 0.05, (18.5, 21.5)),
        "HTR_MODE" => Model::State(1.0),
        "HTR_CURRENT" => analog(1.2, 0.05, 0.01, (1.0, 1.4)),
        "BUS_VOLTAGE" => analog(28.0, 0.03, 0.01, (27.9, 28.1)),
        "BUS_CURRENT" => analog(12.0, 0.3, 0.02, (11.0, 13.0)),
        "BATTERY_TEMP" => analog(18.0, 1.0, 0.03, (16.0, 20.0)),
        "BATTERY_SOC" => analog(97.0, 1.5, 0.05, (94.0, 99.5)),
        "CCD_TEMP_AF" => analog(-110.0, 0.1, 0.03, (-110.5, -109.5)),
        "VIDEO_OFFSET_AF" => analog(1000.0, 1.0, 2.0, (996.0, 1004.0)),
        "SEU_COUNT" => Model::Counter { rate_per_s: 0.01 },
        "PEM_VOLTAGE" => analog(5.0, 0.002, 0.003, (4.98, 5.02)),
        "AOCS_MODE" => Model::State(1.0),
        "PAYLOAD_MODE" => Model::State(2.0),
        "SCAN_RATE_ERR" => analog(0.0, 0.5, 0.3, (-2.0, 2.0)),
        "STR_TEMP" => analog(15.0, 0.5, 0.03, (14.0, 16.0)),
        "STR_STARS" => Model::Integer { lo: 8, hi: 12 },
        // Every parameter of MISSION_DB_TOML is listed above (a unit test checks).
        _ => Model::State(0.0),
    }
}
