//! Data-flow health: completeness per APID per OBT hour against a service level.
//!
//! The counts come from the ordered folder's manifest (`meridian-order` derives
//! them from the sequence-count gaps: a gap's missing packets are spread evenly
//! over its time span). An hour below the service level is a `completeness`
//! event for `param` `apid_0x…`; consecutive such hours of one APID form one event
//! from the start of the first hour to the end of the last, `worst` = the lowest
//! completeness, `samples` = packets missing, severity `alarm` below the alarm level.

use crate::hk::fmt_num;
use meridian_core::records::{HealthEvent, Severity, Value};
use meridian_order::HourCompleteness;
use serde::{Deserialize, Serialize};

/// One OBT hour in ns.
pub const HOUR_NS: u64 = 3_600_000_000_000;

/// Service levels of the data flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataFlowConfig {
    /// Completeness below this is a warning …
    pub service_level: f64,
    /// … and below this an alarm.
    pub alarm_level: f64,
}

impl Default for DataFlowConfig {
    fn default() -> Self {
        Self {
            service_level: 0.99,
            alarm_level: 0.90,
        }
    }
}

/// The `param` name of an APID.
pub fn apid_param(apid: u16) -> String {
    format!("apid_0x{apid:03x}")
}

/// Completeness events, sorted like every other event list.
pub fn completeness_events(hours: &[HourCompleteness], cfg: &DataFlowConfig) -> Vec<HealthEvent> {
    let mut sorted: Vec<&HourCompleteness> = hours.iter().collect();
    sorted.sort_by_key(|h| (h.apid, h.hour_start_obt_ns));
    let mut events = Vec::new();
    let mut open: Option<(u16, HealthEvent)> = None;
    for h in sorted {
        let total = h.received + h.missing;
        let c = if total == 0 {
            1.0
        } else {
            h.received as f64 / total as f64
        };
        if c >= cfg.service_level {
            continue;
        }
        let severity = if c < cfg.alarm_level {
            Severity::Alarm
        } else {
            Severity::Warning
        };
        let end = h.hour_start_obt_ns.saturating_add(HOUR_NS);
        match &mut open {
            Some((apid, e)) if *apid == h.apid && e.end_obt_ns == Some(h.hour_start_obt_ns) => {
                e.end_obt_ns = Some(end);
                e.samples += h.missing;
                e.severity = e.severity.max(severity);
                if c < e.worst.as_number().unwrap_or(f64::INFINITY) {
                    e.worst = Value::Number(c);
                }
            }
            _ => {
                events.extend(open.take().map(|(_, e)| e));
                open = Some((
                    h.apid,
                    HealthEvent {
                        param: apid_param(h.apid),
                        check: "completeness".into(),
                        severity,
                        start_obt_ns: h.hour_start_obt_ns,
                        end_obt_ns: Some(end),
                        worst: Value::Number(c),
                        samples: h.missing,
                        message: String::new(),
                    },
                ));
            }
        }
    }
    events.extend(open.map(|(_, e)| e));
    for e in &mut events {
        e.message = format!(
            "{}: {} packets missing, completeness down to {} (service level {})",
            e.param,
            e.samples,
            fmt_num(e.worst.as_number().unwrap_or(f64::NAN)),
            fmt_num(cfg.service_level)
        );
    }
    crate::hk::sort_events(&mut events);
    events
}
