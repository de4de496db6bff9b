//! Compares the products of two runs, kind by kind, so operators can validate a
//! new pipeline version against the operational one on the same telemetry.
//!
//! Records of each kind are streamed from both runs in the same order (product
//! files sorted by their path relative to the run folder, records in file order)
//! and compared as ICD §9 JSON objects: integers and strings exactly, floating
//! fields within a tolerance. Memory stays bounded by one record per side.

use meridian_core::RecordKind;
use meridian_core::product::{self, ProductError};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How close two floating values must be to count as equal:
/// `|a − b| ≤ abs + rel · max(|a|, |b|)`.
#[derive(Debug, Clone, Copy)]
pub struct Tolerance {
    pub abs: f64,
    pub rel: f64,
}

impl Default for Tolerance {
    /// Tight enough to catch any algorithmic change, loose enough to ignore
    /// last-bit differences of a different compiler or CPU.
    fn default() -> Self {
        Tolerance {
            abs: 1e-9,
            rel: 1e-9,
        }
    }
}

impl Tolerance {
    fn floats_equal(&self, a: f64, b: f64) -> bool {
        a == b || (a - b).abs() <= self.abs + self.rel * a.abs().max(b.abs())
    }
}

/// One differing pair of records.
#[derive(Debug, Clone, Serialize)]
pub struct RecordDiff {
    /// Position of the record in the kind's stream (0-based).
    pub index: u64,
    /// Fields that differ (dotted paths into the JSON object).
    pub fields: Vec<String>,
    pub a: Option<Value>,
    pub b: Option<Value>,
}

/// Differences of one record kind.
#[derive(Debug, Clone, Serialize)]
pub struct KindComparison {
    pub kind: String,
    pub count_a: u64,
    pub count_b: u64,
    /// Records at the same position that differ (beyond the shorter stream,
    /// every extra record counts).
    pub differing: u64,
    /// The first few differences, for a human to look at.
    pub first_differences: Vec<RecordDiff>,
}

impl KindComparison {
    pub fn is_equal(&self) -> bool {
        self.differing == 0 && self.count_a == self.count_b
    }
}

/// The whole comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub run_a: PathBuf,
    pub run_b: PathBuf,
    pub kinds: Vec<KindComparison>,
}

impl Comparison {
    pub fn is_equal(&self) -> bool {
        self.kinds.iter().all(KindComparison::is_equal)
    }
}

/// Compares every product kind found in either run folder.
pub fn compare_runs(
    a: &Path,
    b: &Path,
    tol: Tolerance,
    max_examples: usize,
) -> Result<Comparison, ProductError> {
    let files_a = products_by_kind(a)?;
    let files_b = products_by_kind(b)?;
    let mut kinds = Vec::new();
    for kind in RecordKind::ALL {
        let (fa, fb) = (files_a.get(&kind), files_b.get(&kind));
        if fa.is_none() && fb.is_none() {
            continue;
        }
        let empty = Vec::new();
        kinds.push(compare_kind(
            kind,
            fa.unwrap_or(&empty),
            fb.unwrap_or(&empty),
            tol,
            max_examples,
        )?);
    }
    Ok(Comparison {
        run_a: a.to_owned(),
        run_b: b.to_owned(),
        kinds,
    })
}

/// Product files under `root` grouped by kind, each group in relative-path order.
fn products_by_kind(root: &Path) -> Result<BTreeMap<RecordKind, Vec<PathBuf>>, ProductError> {
    let mut by_kind: BTreeMap<RecordKind, Vec<PathBuf>> = BTreeMap::new();
    for file in product::find_products(root)? {
        let kind = product::read_header(&file)?.kind;
        by_kind.entry(kind).or_default().push(file);
    }
    Ok(by_kind)
}

type RecordStream = Box<dyn Iterator<Item = Result<Map<String, Value>, ProductError>>>;

fn stream(files: &[PathBuf]) -> RecordStream {
    let files = files.to_vec();
    Box::new(
        files
            .into_iter()
            .flat_map(|f| match product::json_records(&f) {
                Ok(records) => records,
                Err(e) => Box::new(std::iter::once(Err(e))),
            }),
    )
}

fn compare_kind(
    kind: RecordKind,
    files_a: &[PathBuf],
    files_b: &[PathBuf],
    tol: Tolerance,
    max_examples: usize,
) -> Result<KindComparison, ProductError> {
    let mut out = KindComparison {
        kind: kind.as_str().to_owned(),
        count_a: 0,
        count_b: 0,
        differing: 0,
        first_differences: Vec::new(),
    };
    let (mut sa, mut sb) = (stream(files_a), stream(files_b));
    loop {
        let (ra, rb) = (sa.next().transpose()?, sb.next().transpose()?);
        if ra.is_none() && rb.is_none() {
            return Ok(out);
        }
        let index = out.count_a.max(out.count_b);
        out.count_a += ra.is_some() as u64;
        out.count_b += rb.is_some() as u64;
        let fields = match (&ra, &rb) {
            (Some(a), Some(b)) => differing_fields(a, b, tol),
            _ => vec!["<missing record>".to_owned()],
        };
        if !fields.is_empty() {
            out.differing += 1;
            if out.first_differences.len() < max_examples {
                out.first_differences.push(RecordDiff {
                    index,
                    fields,
                    a: ra.map(Value::Object),
                    b: rb.map(Value::Object),
                });
            }
        }
    }
}

/// Dotted paths of the fields where two records differ beyond the tolerance.
pub fn differing_fields(
    a: &Map<String, Value>,
    b: &Map<String, Value>,
    tol: Tolerance,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        diff_value(key, a.get(key.as_str()), b.get(key.as_str()), tol, &mut out);
    }
    out
}

fn diff_value(
    path: &str,
    a: Option<&Value>,
    b: Option<&Value>,
    tol: Tolerance,
    out: &mut Vec<String>,
) {
    match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => {
            // Integers (ids, times, counts) must never drift: exact. Floats: tolerance.
            let equal = if !x.is_f64() && !y.is_f64() {
                x == y
            } else {
                tol.floats_equal(
                    x.as_f64().unwrap_or(f64::NAN),
                    y.as_f64().unwrap_or(f64::NAN),
                )
            };
            if !equal {
                out.push(path.to_owned());
            }
        }
        (Some(Value::Array(x)), Some(Value::Array(y))) if x.len() == y.len() => {
            for (i, (vx, vy)) in x.iter().zip(y).enumerate() {
                diff_value(&format!("{path}.{i}"), Some(vx), Some(vy), tol, out);
            }
        }
        (Some(Value::Object(x)), Some(Value::Object(y))) => {
            for field in differing_fields(x, y, tol) {
                out.push(format!("{path}.{field}"));
            }
        }
        (x, y) if x == y => {}
        _ => out.push(path.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_core::records::{Flags, Match, Transit};
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn floats_within_tolerance_are_equal_but_integers_are_exact() {
        let tol = Tolerance {
            abs: 1e-6,
            rel: 0.0,
        };
        let a = obj(json!({"ra": 10.0, "transit_id": 5, "flags": ["saturated"], "q": [1.0, 2.0]}));
        let b = obj(
            json!({"ra": 10.0000005, "transit_id": 5, "flags": ["saturated"], "q": [1.0, 2.0]}),
        );
        assert!(differing_fields(&a, &b, tol).is_empty());
        let c = obj(json!({"ra": 10.00001, "transit_id": 6, "flags": [], "q": [1.0, 2.5]}));
        assert_eq!(
            differing_fields(&a, &c, tol),
            vec!["flags", "q.1", "ra", "transit_id"]
        );
        let d = obj(json!({"ra": null, "transit_id": 5, "flags": ["saturated"], "q": [1.0, 2.0]}));
        assert_eq!(differing_fields(&a, &d, tol), vec!["ra"]);
    }

    fn transit(id: u64, ra: f64) -> Transit {
        Transit {
            transit_id: id,
            fov: 0,
            row: 4,
            t_obs_ns: id * 10,
            ra: Some(ra),
            dec: Some(1.0),
            n_windows: 9,
            mag: Some(15.0),
            flags: Flags::EMPTY,
            sigma_al_mas: None,
            sigma_ac_mas: None,
            scan_pa_deg: None,
        }
    }

    #[test]
    fn runs_compare_per_kind_with_counts_and_first_differences() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let ts: Vec<Transit> = (0..5).map(|i| transit(i, 10.0 + i as f64)).collect();
        product::write_all(a.path().join("transit.mprod"), &ts).unwrap();
        product::write_all(b.path().join("transit.mprod"), &ts).unwrap();
        let m = Match {
            transit_id: 1,
            source_id: Some(3),
            sep_mas: Some(1.0),
            n_candidates: 1,
            ambiguous: vec![],
            new_source: None,
            ra_cat: None,
            dec_cat: None,
        };
        product::write_all(a.path().join("match.mprod"), std::slice::from_ref(&m)).unwrap();
        product::write_all(b.path().join("match.mprod"), std::slice::from_ref(&m)).unwrap();
        let same = compare_runs(a.path(), b.path(), Tolerance::default(), 3).unwrap();
        assert!(same.is_equal(), "{same:?}");
        assert_eq!(same.kinds.len(), 2);

        let mut changed = ts.clone();
        changed[2].ra = Some(99.0);
        changed.push(transit(9, 1.0));
        product::write_all(b.path().join("transit.mprod"), &changed).unwrap();
        let diff = compare_runs(a.path(), b.path(), Tolerance::default(), 3).unwrap();
        assert!(!diff.is_equal());
        let t = diff.kinds.iter().find(|k| k.kind == "transit").unwrap();
        assert_eq!((t.count_a, t.count_b, t.differing), (5, 6, 2));
        assert_eq!(t.first_differences[0].index, 2);
        assert_eq!(t.first_differences[0].fields, vec!["ra"]);
        assert!(t.first_differences[1].a.is_none());
        assert!(
            diff.kinds
                .iter()
                .find(|k| k.kind == "match")
                .unwrap()
                .is_equal()
        );
    }
}
