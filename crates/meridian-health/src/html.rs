//! The single self-contained HTML report: a summary an operator reads in ten
//! seconds, the event table, then SVG plots (drawn with plotters) of every
//! housekeeping parameter against its limit bands with its events shaded, science
//! residuals and match rate per field of view, and completeness per hour.
//!
//! No scripts, no external resources: the file opens anywhere, offline.

use crate::dataflow::apid_param;
use crate::hk::fmt_num;
use crate::report::{HealthReport, Status, severity_name};
use crate::science::{ScienceBin, ScienceConfig, Threshold};
use meridian_core::records::{HealthEvent, Severity, Value};
use meridian_telemetry::MissionDb;
use meridian_telemetry::mission_db::Limits;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Most points drawn per series (min/max per bucket beyond that).
const MAX_POINTS: usize = 1600;
/// Most events listed in the table.
const MAX_EVENT_ROWS: usize = 300;
const WIDTH: u32 = 960;
const HEIGHT: u32 = 260;

/// One parameter's engineering values over time (raw values for state
/// parameters), as collected while checking.
pub type HkSeries = BTreeMap<String, Vec<(u64, f64)>>;

/// Calendar form of an OBT (TAI, from the 2010-01-01 epoch; TAI has no leap seconds).
pub fn obt_to_tai(obt_ns: u64) -> String {
    let secs = obt_ns / 1_000_000_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Days from 1970-01-01 to 2010-01-01: 14610.
    let (y, m, d) = civil_from_days(days as i64 + 14_610);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02} TAI",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm (days since 1970-01-01).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + (m <= 2) as i64, m, d)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A line (or point) series of a chart, x in hours since the span start.
struct Line {
    label: String,
    points: Vec<(f64, f64)>,
    color: RGBColor,
    dots: bool,
}

/// A horizontal reference line (a limit).
struct HLine {
    y: f64,
    color: RGBColor,
}

/// A shaded time span (an event).
struct Shade {
    x0: f64,
    x1: f64,
    color: RGBColor,
}

const RED: RGBColor = RGBColor(200, 30, 30);
const ORANGE: RGBColor = RGBColor(230, 140, 0);
const BLUE: RGBColor = RGBColor(30, 90, 200);
const GREEN: RGBColor = RGBColor(20, 140, 60);
const GREY: RGBColor = RGBColor(120, 120, 120);

struct Axis {
    t0: u64,
    hours: f64,
}

impl Axis {
    fn x(&self, t: u64) -> f64 {
        (t as f64 - self.t0 as f64) / 3.6e12
    }
}

/// Draws one chart as an SVG string; an error from plotters becomes a note.
fn chart(
    title: &str,
    y_label: &str,
    axis: &Axis,
    lines: &[Line],
    hlines: &[HLine],
    shades: &[Shade],
) -> String {
    let mut svg = String::new();
    let result = draw(&mut svg, title, y_label, axis, lines, hlines, shades);
    match result {
        Ok(()) => svg,
        Err(e) => format!(
            "<p class=\"note\">plot {} failed: {}</p>",
            esc(title),
            esc(&e)
        ),
    }
}

fn y_range(lines: &[Line], hlines: &[HLine]) -> (f64, f64) {
    let ys = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .chain(hlines.iter().map(|h| h.y))
        .filter(|y| y.is_finite());
    let (lo, hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| {
        (a.min(y), b.max(y))
    });
    if !lo.is_finite() {
        return (-1.0, 1.0);
    }
    let pad = ((hi - lo) * 0.08).max(hi.abs().max(1.0) * 1e-6);
    (lo - pad, hi + pad)
}

fn draw(
    svg: &mut String,
    title: &str,
    y_label: &str,
    axis: &Axis,
    lines: &[Line],
    hlines: &[HLine],
    shades: &[Shade],
) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let root = SVGBackend::with_string(svg, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (y0, y1) = y_range(lines, hlines);
    let x1 = axis.hours.max(1e-6);
    let mut c = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 16))
        .margin(8)
        .x_label_area_size(32)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..x1, y0..y1)
        .map_err(|e| err(&e))?;
    c.configure_mesh()
        .x_desc("hours since the start of the checked span")
        .y_desc(y_label)
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(|e| err(&e))?;
    for s in shades {
        let x0 = s.x0.clamp(0.0, x1);
        let xe = s.x1.clamp(0.0, x1).max(x0 + x1 * 0.002);
        c.draw_series(std::iter::once(Rectangle::new(
            [(x0, y0), (xe, y1)],
            s.color.mix(0.18).filled(),
        )))
        .map_err(|e| err(&e))?;
    }
    for h in hlines {
        c.draw_series(LineSeries::new(
            [(0.0, h.y), (x1, h.y)],
            h.color.stroke_width(1),
        ))
        .map_err(|e| err(&e))?;
    }
    for l in lines {
        let pts = l.points.iter().copied().filter(|p| p.1.is_finite());
        if l.dots {
            c.draw_series(pts.map(|p| Circle::new(p, 2, l.color.filled())))
                .map_err(|e| err(&e))?
                .label(l.label.clone())
                .legend(move |(x, y)| Circle::new((x + 8, y), 3, l.color.filled()));
        } else {
            c.draw_series(LineSeries::new(pts, l.color.stroke_width(1)))
                .map_err(|e| err(&e))?
                .label(l.label.clone())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], l.color));
        }
    }
    if lines.len() > 1 {
        c.configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(GREY)
            .draw()
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// At most [`MAX_POINTS`] points: the first, min and max of each bucket.
fn thin(points: &[(u64, f64)], axis: &Axis) -> Vec<(f64, f64)> {
    if points.len() <= MAX_POINTS {
        return points.iter().map(|&(t, v)| (axis.x(t), v)).collect();
    }
    let per = points.len().div_ceil(MAX_POINTS / 2);
    let mut out = Vec::with_capacity(MAX_POINTS + 2);
    for bucket in points.chunks(per) {
        let finite = bucket.iter().filter(|p| p.1.is_finite());
        let lo = finite.clone().min_by(|a, b| a.1.total_cmp(&b.1));
        let hi = finite.max_by(|a, b| a.1.total_cmp(&b.1));
        let mut two: Vec<(u64, f64)> = lo.into_iter().chain(hi).copied().collect();
        two.sort_by_key(|p| p.0);
        out.extend(two.into_iter().map(|(t, v)| (axis.x(t), v)));
    }
    out
}

fn shades_for<'a>(
    events: impl Iterator<Item = &'a HealthEvent>,
    axis: &Axis,
    end_ns: u64,
) -> Vec<Shade> {
    events
        .map(|e| Shade {
            x0: axis.x(e.start_obt_ns),
            x1: axis.x(e.end_obt_ns.unwrap_or(end_ns)),
            color: if e.severity == Severity::Alarm {
                RED
            } else {
                ORANGE
            },
        })
        .collect()
}

fn limit_lines(warning: Option<Limits>, alarm: Option<Limits>) -> Vec<HLine> {
    let mut out = Vec::new();
    for (l, color) in [(warning, ORANGE), (alarm, RED)] {
        if let Some(l) = l {
            out.extend(l.low.into_iter().chain(l.high).map(|y| HLine { y, color }));
        }
    }
    out
}

fn worst_text(v: &Value) -> String {
    match v {
        Value::Number(x) => fmt_num(*x),
        Value::State(s) => s.clone(),
    }
}

/// Renders the whole report.
pub fn render(
    report: &HealthReport,
    db: &MissionDb,
    series: &HkSeries,
    science: &ScienceConfig,
) -> String {
    let mut h = String::with_capacity(1 << 20);
    let (t0, t1) = span(report, series);
    let axis = Axis {
        t0,
        hours: (t1.saturating_sub(t0)) as f64 / 3.6e12,
    };
    head(&mut h, report, t0, t1);
    events_table(&mut h, report, t1);
    let _ = writeln!(h, "<h2>Housekeeping</h2>");
    hk_section(&mut h, report, db, series, &axis, t1);
    let _ = writeln!(h, "<h2>Science</h2>");
    science_section(&mut h, report, &axis, science);
    let _ = writeln!(h, "<h2>Data flow</h2>");
    dataflow_section(&mut h, report, &axis);
    h.push_str("</body>\n</html>\n");
    h
}

/// OBT span the plots cover: the checked housekeeping span, widened to the
/// science bins and completeness hours.
fn span(report: &HealthReport, series: &HkSeries) -> (u64, u64) {
    let times = series
        .values()
        .flat_map(|s| s.first().into_iter().chain(s.last()).map(|p| p.0))
        .chain(report.hk.first_obt_ns)
        .chain(report.hk.end_of_data_ns)
        .chain(
            report
                .science
                .iter()
                .flat_map(|b| [b.start_obt_ns, b.end_obt_ns]),
        )
        .chain(report.completeness.iter().flat_map(|c| {
            [
                c.hour_start_obt_ns,
                c.hour_start_obt_ns.saturating_add(crate::dataflow::HOUR_NS),
            ]
        }));
    let (lo, hi) = times.fold((u64::MAX, 0), |(a, b), t| (a.min(t), b.max(t)));
    if lo > hi { (0, 0) } else { (lo, hi) }
}

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;color:#222;max-width:1000px}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:13px}\
th{background:#f0f0f0}.status{font-size:28px;font-weight:bold;padding:4px 16px;border-radius:6px;color:#fff}\
.OK{background:#1a8c3c}.WARNING{background:#e68a00}.CRITICAL{background:#c81e1e}.UNKNOWN{background:#777}\
.alarm{background:#fbdada}.warning{background:#fff0d0}.note{color:#666;font-size:13px}\
.big td{font-size:16px}h2{border-bottom:2px solid #ddd;margin-top:1.5em}figure{margin:.6em 0}";

fn head(h: &mut String, r: &HealthReport, t0: u64, t1: u64) {
    let s = r.status.as_str();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>Meridian payload health: {s}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>Meridian payload health <span class=\"status {s}\">{s}</span></h1>\n"
    );
    let _ = writeln!(
        h,
        "<p>Checked span {} to {} ({} h).</p>",
        obt_to_tai(t0),
        obt_to_tai(t1),
        fmt_num((t1 - t0) as f64 / 3.6e12)
    );
    let matched: u64 = r.science.iter().map(|b| b.matched).sum();
    let positioned: u64 = r.science.iter().map(|b| b.positioned).sum();
    let rate = if positioned > 0 {
        format!("{:.1} %", 100.0 * matched as f64 / positioned as f64)
    } else {
        "n/a".into()
    };
    let worst_completeness = r
        .completeness
        .iter()
        .filter(|c| c.received + c.missing > 0)
        .map(|c| c.received as f64 / (c.received + c.missing) as f64)
        .fold(None, |a: Option<f64>, c| Some(a.map_or(c, |a| a.min(c))))
        .map_or("n/a".into(), |c| format!("{:.2} %", 100.0 * c));
    let checks: Vec<String> = r
        .summary
        .by_check
        .iter()
        .map(|(c, n)| format!("{c}: {n}"))
        .collect();
    let _ = writeln!(
        h,
        "<table class=\"big\">\n<tr><th>status</th><td class=\"{cls}\">{s}</td>\
         <th>alarms</th><td>{}</td><th>warnings</th><td>{}</td><th>still open</th><td>{}</td></tr>\n\
         <tr><th>events by check</th><td colspan=\"7\">{}</td></tr>\n\
         <tr><th>hk samples checked</th><td>{}</td><th>late / unknown</th><td>{} / {}</td>\
         <th>match rate</th><td>{rate}</td><th>worst completeness</th><td>{worst_completeness}</td></tr>\n</table>",
        r.summary.alarms,
        r.summary.warnings,
        r.summary.open,
        if checks.is_empty() {
            "none".into()
        } else {
            esc(&checks.join(", "))
        },
        r.hk.stats.samples_checked,
        r.hk.stats.late,
        r.hk.stats.unknown,
        cls = match r.status {
            Status::Critical => "alarm",
            Status::Warning => "warning",
            _ => "",
        },
    );
    if !r.not_evaluated.is_empty() {
        let _ = writeln!(
            h,
            "<p class=\"note\">Not evaluated (no input): {}.</p>",
            esc(&r.not_evaluated.join(", "))
        );
    }
    if !r.hk.never_reported.is_empty() {
        let _ = writeln!(
            h,
            "<p class=\"note\">Never reported: {}.</p>",
            esc(&r.hk.never_reported.join(", "))
        );
    }
}

fn events_table(h: &mut String, r: &HealthReport, end_ns: u64) {
    let _ = writeln!(h, "<h2>Events</h2>");
    if r.events.is_empty() {
        let _ = writeln!(h, "<p>No events.</p>");
        return;
    }
    let mut rows: Vec<&HealthEvent> = r.events.iter().collect();
    rows.sort_by_key(|e| (std::cmp::Reverse(e.severity), e.start_obt_ns));
    let _ = writeln!(
        h,
        "<table>\n<tr><th>severity</th><th>param</th><th>check</th><th>start</th><th>end</th>\
         <th>worst</th><th>samples</th><th>message</th></tr>"
    );
    for e in rows.iter().take(MAX_EVENT_ROWS) {
        let sev = severity_name(e.severity);
        let end = e.end_obt_ns.map_or_else(|| "open".to_owned(), obt_to_tai);
        let _ = writeln!(
            h,
            "<tr class=\"{sev}\"><td>{sev}</td><td>{}</td><td>{}</td><td>{}</td><td>{end}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&e.param),
            esc(&e.check),
            obt_to_tai(e.start_obt_ns),
            esc(&worst_text(&e.worst)),
            e.samples,
            esc(&e.message)
        );
    }
    let _ = writeln!(h, "</table>");
    if rows.len() > MAX_EVENT_ROWS {
        let _ = writeln!(
            h,
            "<p class=\"note\">{} more events in report.json and health_event.mprod (end of data {}).</p>",
            rows.len() - MAX_EVENT_ROWS,
            obt_to_tai(end_ns)
        );
    }
}

fn hk_section(
    h: &mut String,
    r: &HealthReport,
    db: &MissionDb,
    series: &HkSeries,
    axis: &Axis,
    end_ns: u64,
) {
    // Parameters with events first, so trouble is at the top.
    let mut params: Vec<_> = db.params().collect();
    params.sort_by_key(|p| !r.events.iter().any(|e| e.param == p.name));
    for p in params {
        let Some(points) = series.get(&p.name) else {
            let _ = writeln!(h, "<p class=\"note\">{}: no samples.</p>", esc(&p.name));
            continue;
        };
        let mut hl = limit_lines(p.warning, p.alarm);
        for c in &p.contexts {
            hl.extend(
                limit_lines(c.warning, c.alarm)
                    .into_iter()
                    .map(|l| HLine { color: GREY, ..l }),
            );
        }
        let unit = p.unit.as_deref().unwrap_or(if p.calibration.is_states() {
            "raw state"
        } else {
            ""
        });
        let line = Line {
            label: p.name.clone(),
            points: thin(points, axis),
            color: BLUE,
            dots: p.calibration.is_states(),
        };
        let shades = shades_for(r.events.iter().filter(|e| e.param == p.name), axis, end_ns);
        h.push_str("<figure>");
        h.push_str(&chart(&p.name, unit, axis, &[line], &hl, &shades));
        h.push_str("</figure>\n");
    }
    let _ = writeln!(
        h,
        "<p class=\"note\">Lines: warning (orange) and alarm (red) limits; grey: context limits. \
         Shading: warning (orange) and alarm (red) events.</p>"
    );
}

fn fov_lines(
    bins: &[ScienceBin],
    axis: &Axis,
    metric: fn(&ScienceBin) -> Option<f64>,
) -> Vec<Line> {
    [(0u8, BLUE), (1, GREEN)]
        .into_iter()
        .map(|(fov, color)| Line {
            label: format!("fov{fov}"),
            points: bins
                .iter()
                .filter(|b| b.fov == fov)
                .filter_map(|b| Some((axis.x((b.start_obt_ns + b.end_obt_ns) / 2), metric(b)?)))
                .collect(),
            color,
            dots: true,
        })
        .collect()
}

/// A per-bin metric to plot.
type BinMetric = fn(&ScienceBin) -> Option<f64>;

fn science_section(h: &mut String, r: &HealthReport, axis: &Axis, cfg: &ScienceConfig) {
    if r.science.is_empty() {
        let _ = writeln!(h, "<p>No located or matched products were given.</p>");
        return;
    }
    let charts: [(&str, &str, BinMetric, Threshold, bool); 5] = [
        (
            "residual_al",
            "mas",
            |b| b.median_al_mas,
            cfg.residual_al_mas,
            true,
        ),
        (
            "residual_ac",
            "mas",
            |b| b.median_ac_mas,
            cfg.residual_ac_mas,
            true,
        ),
        (
            "residual_al_outliers",
            "fraction",
            |b| b.al_outlier_fraction,
            cfg.al_outlier_fraction,
            false,
        ),
        (
            "match_rate",
            "fraction",
            |b| b.match_rate,
            cfg.match_rate,
            false,
        ),
        (
            "flagged_windows",
            "fraction",
            |b| b.flagged_fraction,
            cfg.flagged_fraction,
            false,
        ),
    ];
    let end = r.science.iter().map(|b| b.end_obt_ns).max().unwrap_or(0);
    for (check, unit, metric, t, symmetric) in charts {
        let lines = fov_lines(&r.science, axis, metric);
        let shades = shades_for(r.events.iter().filter(|e| e.check == check), axis, end);
        // Threshold lines only where they fall near the data, so they do not
        // squash it; medians are judged on their magnitude, so both signs.
        let data_max = lines
            .iter()
            .flat_map(|l| l.points.iter().map(|p| p.1.abs()))
            .fold(0.0, f64::max);
        let mut hl = Vec::new();
        for (y, color) in [(t.warning, ORANGE), (t.alarm, RED)] {
            if y.abs() <= 3.0 * data_max.max(f64::MIN_POSITIVE) || t.low {
                hl.push(HLine { y, color });
                if symmetric {
                    hl.push(HLine { y: -y, color });
                }
            }
        }
        let title = crate::science::describe(check);
        let title = format!(
            "{}{} per field of view",
            title[..1].to_uppercase(),
            &title[1..]
        );
        h.push_str("<figure>");
        h.push_str(&chart(&title, unit, axis, &lines, &hl, &shades));
        h.push_str("</figure>\n");
    }
    let transits: u64 = r.science.iter().map(|b| b.transits).sum();
    let _ = writeln!(
        h,
        "<p class=\"note\">{transits} transits in {} bins.</p>",
        r.science.len()
    );
}

fn dataflow_section(h: &mut String, r: &HealthReport, axis: &Axis) {
    if r.completeness.is_empty() {
        let _ = writeln!(
            h,
            "<p>No completeness counts were given (no ordered folder).</p>"
        );
        return;
    }
    let apids: std::collections::BTreeSet<u16> = r.completeness.iter().map(|c| c.apid).collect();
    let colors = [BLUE, GREEN, RGBColor(140, 60, 170), GREY];
    let lines: Vec<Line> = apids
        .iter()
        .enumerate()
        .map(|(i, &apid)| Line {
            label: apid_param(apid),
            points: r
                .completeness
                .iter()
                .filter(|c| c.apid == apid && c.received + c.missing > 0)
                .map(|c| {
                    (
                        axis.x(c
                            .hour_start_obt_ns
                            .saturating_add(crate::dataflow::HOUR_NS / 2)),
                        c.received as f64 / (c.received + c.missing) as f64,
                    )
                })
                .collect(),
            color: colors[i % colors.len()],
            dots: true,
        })
        .collect();
    let end = r
        .completeness
        .iter()
        .map(|c| c.hour_start_obt_ns.saturating_add(crate::dataflow::HOUR_NS))
        .max()
        .unwrap_or(0);
    let shades = shades_for(
        r.events.iter().filter(|e| e.check == "completeness"),
        axis,
        end,
    );
    h.push_str("<figure>");
    h.push_str(&chart(
        "Completeness per hour",
        "fraction received",
        axis,
        &lines,
        &[],
        &shades,
    ));
    h.push_str("</figure>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tai_calendar_from_the_mission_epoch() {
        assert_eq!(obt_to_tai(0), "2010-01-01T00:00:00 TAI");
        // 2012 is a leap year: 2010 + 2011 + 2012 = 1096 days to 2013-01-01.
        assert_eq!(
            obt_to_tai(1096 * 86_400 * 1_000_000_000 + 3_723_000_000_000),
            "2013-01-01T01:02:03 TAI"
        );
        assert_eq!(
            obt_to_tai(59 * 86_400 * 1_000_000_000),
            "2010-03-01T00:00:00 TAI"
        );
    }
}
