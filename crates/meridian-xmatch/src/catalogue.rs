//! Streaming reader of the ICD §7 catalogue CSV (Gaia archive column names).
//!
//! Columns are found by name in the header row, so their order does not matter
//! and unknown columns are ignored. Fields may be double-quoted (`""` escapes a
//! quote). Blank lines are skipped. Every other problem is an error naming the
//! 1-based line number; the caller decides whether to stop or count and skip.

use std::borrow::Cow;
use std::io::BufRead;

/// One catalogue source as read from the CSV, before indexing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CatalogueSource {
    pub source_id: i64,
    /// Right ascension at `ref_epoch`, degrees.
    pub ra: f64,
    /// Declination at `ref_epoch`, degrees.
    pub dec: f64,
    /// µα* = µα cos δ, mas/yr (0 when the field is empty).
    pub pmra: f64,
    /// µδ, mas/yr (0 when the field is empty).
    pub pmdec: f64,
    /// Julian year of the position.
    pub ref_epoch: f64,
    /// `phot_g_mean_mag`, when the column exists and the field is not empty.
    pub mag: Option<f64>,
}

/// A problem with the catalogue text.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CsvError {
    #[error("line {line}: {message}")]
    Row { line: u64, message: String },
    #[error("header: {0}")]
    Header(String),
    #[error("read error at line {line}: {message}")]
    Io { line: u64, message: String },
}

impl CsvError {
    /// True for an error confined to one data row (which `--skip-bad` may skip).
    pub fn is_row_error(&self) -> bool {
        matches!(self, CsvError::Row { .. })
    }
}

#[derive(Debug, Clone, Copy)]
struct Columns {
    source_id: usize,
    ra: usize,
    dec: usize,
    pmra: Option<usize>,
    pmdec: Option<usize>,
    ref_epoch: Option<usize>,
    mag: Option<usize>,
    count: usize,
}

/// Parses data lines once the header is known.
#[derive(Debug, Clone, Copy)]
pub struct RowParser {
    columns: Columns,
    default_epoch: Option<f64>,
}

impl RowParser {
    /// Parses one data line (without its line end). Pure, so blocks of lines
    /// can be parsed in parallel.
    pub fn parse_line(&self, line: &str) -> Result<CatalogueSource, String> {
        let fields = split_fields(line.trim_end_matches(['\n', '\r']))?;
        let c = self.columns;
        if fields.len() != c.count {
            return Err(format!(
                "{} fields, the header has {}",
                fields.len(),
                c.count
            ));
        }
        let text = |i: usize| fields[i].trim();
        let source_id = text(c.source_id)
            .parse::<i64>()
            .map_err(|_| format!("source_id {:?} is not a 64-bit integer", text(c.source_id)))?;
        let ra = number(text(c.ra), "ra")?;
        let dec = number(text(c.dec), "dec")?;
        if !(-90.0..=90.0).contains(&dec) {
            return Err(format!("dec {dec} is outside [-90, 90]"));
        }
        let optional = |col: Option<usize>, name: &str| -> Result<Option<f64>, String> {
            match col.map(text) {
                None | Some("") => Ok(None),
                Some(t) => number(t, name).map(Some),
            }
        };
        let pmra = optional(c.pmra, "pmra")?.unwrap_or(0.0);
        let pmdec = optional(c.pmdec, "pmdec")?.unwrap_or(0.0);
        let ref_epoch = match optional(c.ref_epoch, "ref_epoch")?.or(self.default_epoch) {
            Some(e) => e,
            None => return Err("ref_epoch is empty and no --ref-epoch was given".into()),
        };
        let mag = optional(c.mag, "phot_g_mean_mag")?;
        Ok(CatalogueSource {
            source_id,
            ra,
            dec,
            pmra,
            pmdec,
            ref_epoch,
            mag,
        })
    }
}

/// Iterates the sources of a catalogue CSV, one `Result` per data row.
pub struct CatalogueReader<R> {
    input: R,
    columns: Columns,
    default_epoch: Option<f64>,
    line_no: u64,
    line: String,
    failed_io: bool,
}

impl<R: BufRead> CatalogueReader<R> {
    /// Reads the header row. `default_epoch` is `--ref-epoch`: used where the
    /// `ref_epoch` column is absent (or a field of it is empty).
    pub fn new(mut input: R, default_epoch: Option<f64>) -> Result<Self, CsvError> {
        let mut line = String::new();
        let mut line_no = 0;
        loop {
            line.clear();
            let n = input.read_line(&mut line).map_err(|e| CsvError::Io {
                line: line_no + 1,
                message: e.to_string(),
            })?;
            line_no += 1;
            if n == 0 {
                return Err(CsvError::Header("the file is empty (no header row)".into()));
            }
            if !line.trim().is_empty() {
                break;
            }
        }
        if let Some(e) = default_epoch
            && !e.is_finite()
        {
            return Err(CsvError::Header(format!("--ref-epoch {e} is not finite")));
        }
        let names: Vec<String> = split_fields(line.trim_end_matches(['\n', '\r']))
            .map_err(|m| CsvError::Header(format!("line {line_no}: {m}")))?
            .into_iter()
            .map(Cow::into_owned)
            .collect();
        let find = |name: &str| names.iter().position(|n| n.trim() == name);
        let need =
            |name: &str| find(name).ok_or_else(|| CsvError::Header(format!("no `{name}` column")));
        let columns = Columns {
            source_id: need("source_id")?,
            ra: need("ra")?,
            dec: need("dec")?,
            pmra: find("pmra"),
            pmdec: find("pmdec"),
            ref_epoch: find("ref_epoch"),
            mag: find("phot_g_mean_mag"),
            count: names.len(),
        };
        if columns.ref_epoch.is_none() && default_epoch.is_none() {
            return Err(CsvError::Header(
                "no `ref_epoch` column and no --ref-epoch given (ICD §7 needs one)".into(),
            ));
        }
        Ok(Self {
            input,
            columns,
            default_epoch,
            line_no,
            line,
            failed_io: false,
        })
    }

    /// Line number of the last line read (1-based).
    pub fn line_number(&self) -> u64 {
        self.line_no
    }

    /// The row parser (column positions and default epoch), which can be
    /// shared by threads parsing blocks of lines.
    pub fn parser(&self) -> RowParser {
        RowParser {
            columns: self.columns,
            default_epoch: self.default_epoch,
        }
    }

    /// Reads up to `max` non-blank lines into `out` (cleared first), for
    /// [`RowParser::parse_line`]. Empty at end of input.
    pub fn read_block(&mut self, max: usize, out: &mut LineBlock) -> Result<(), CsvError> {
        out.text.clear();
        out.lines.clear();
        while out.lines.len() < max {
            let start = out.text.len();
            self.line_no += 1;
            let n = self
                .input
                .read_line(&mut out.text)
                .map_err(|e| CsvError::Io {
                    line: self.line_no,
                    message: e.to_string(),
                })?;
            if n == 0 {
                break;
            }
            if out.text[start..].trim().is_empty() {
                out.text.truncate(start);
            } else {
                out.lines.push((self.line_no, start, out.text.len()));
            }
        }
        Ok(())
    }
}

fn number(text: &str, name: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!("{name} {text:?} is not a finite number")),
    }
}

/// Lines of a catalogue read in one go: one buffer, no allocation per line.
#[derive(Debug, Default)]
pub struct LineBlock {
    text: String,
    lines: Vec<(u64, usize, usize)>,
}

impl LineBlock {
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// The `i`-th line: its 1-based number in the file and its text.
    pub fn line(&self, i: usize) -> (u64, &str) {
        let (no, a, b) = self.lines[i];
        (no, &self.text[a..b])
    }
}

impl<R: BufRead> Iterator for CatalogueReader<R> {
    type Item = Result<CatalogueSource, CsvError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed_io {
            return None;
        }
        loop {
            self.line.clear();
            self.line_no += 1;
            match self.input.read_line(&mut self.line) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => {
                    self.failed_io = true;
                    return Some(Err(CsvError::Io {
                        line: self.line_no,
                        message: e.to_string(),
                    }));
                }
            }
            if self.line.trim().is_empty() {
                continue;
            }
            let line = self.line_no;
            return Some(
                self.parser()
                    .parse_line(&self.line)
                    .map_err(|message| CsvError::Row { line, message }),
            );
        }
    }
}

/// Splits one CSV line into fields, honouring double quotes; borrowed unless a
/// field was quoted.
fn split_fields(line: &str) -> Result<Vec<Cow<'_, str>>, String> {
    if !line.contains('"') {
        return Ok(line.split(',').map(Cow::Borrowed).collect());
    }
    let mut out = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut in_quotes = false;
    let mut was_quoted = false;
    while let Some(ch) = chars.next() {
        match (in_quotes, ch) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => in_quotes = false,
            (true, c) => field.push(c),
            (false, '"') if field.trim().is_empty() && !was_quoted => {
                field.clear();
                in_quotes = true;
                was_quoted = true;
            }
            (false, ',') => {
                out.push(Cow::Owned(std::mem::take(&mut field)));
                was_quoted = false;
            }
            (false, '"') => return Err("stray double quote inside a field".into()),
            (false, c) => field.push(c),
        }
    }
    if in_quotes {
        return Err("unterminated double quote".into());
    }
    out.push(Cow::Owned(field));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(
        text: &str,
        epoch: Option<f64>,
    ) -> Result<Vec<Result<CatalogueSource, CsvError>>, CsvError> {
        Ok(CatalogueReader::new(text.as_bytes(), epoch)?.collect())
    }

    #[test]
    fn columns_by_name_empty_pm_is_zero_and_extra_columns_ignored() {
        let rows = read(
            "solution_id,dec,source_id,ra,pmra,pmdec,ref_epoch,phot_g_mean_mag\n\
             7,-10.5,42,350.25,,3.5,2016.0,\n\
             \r\n\
             8,\"20\",-3,1,1.5,,2015.5,12.25\r\n",
            None,
        )
        .unwrap();
        let a = rows[0].as_ref().unwrap();
        assert_eq!((a.source_id, a.ra, a.dec), (42, 350.25, -10.5));
        assert_eq!(
            (a.pmra, a.pmdec, a.ref_epoch, a.mag),
            (0.0, 3.5, 2016.0, None)
        );
        let b = rows[1].as_ref().unwrap();
        assert_eq!(
            (b.source_id, b.pmra, b.pmdec, b.mag),
            (-3, 1.5, 0.0, Some(12.25))
        );
        assert_eq!(rows.len(), 2);
    }

    #[test]
    fn epoch_column_wins_over_flag_and_flag_fills_absent_column() {
        let rows = read(
            "source_id,ra,dec,ref_epoch\n1,0,0,2015.5\n2,0,0,\n",
            Some(2000.0),
        )
        .unwrap();
        assert_eq!(rows[0].as_ref().unwrap().ref_epoch, 2015.5);
        assert_eq!(rows[1].as_ref().unwrap().ref_epoch, 2000.0);
        let rows = read("source_id,ra,dec\n1,0,0\n", Some(2016.0)).unwrap();
        assert_eq!(rows[0].as_ref().unwrap().ref_epoch, 2016.0);
        let err = read("source_id,ra,dec\n1,0,0\n", None).err().unwrap();
        assert!(err.to_string().contains("ref_epoch"), "{err}");
    }

    #[test]
    fn bad_rows_name_their_line() {
        let rows = read(
            "source_id,ra,dec,ref_epoch\n1,0,0,2016\n2,x,0,2016\n3,0,91,2016\n4,0,0\n5.5,0,0,2016\n6,0,nan,2016\n\"7,0,0,2016\n",
            None,
        )
        .unwrap();
        assert!(rows[0].is_ok());
        let lines: Vec<u64> = rows
            .iter()
            .filter_map(|r| match r {
                Err(CsvError::Row { line, .. }) => Some(*line),
                _ => None,
            })
            .collect();
        assert_eq!(lines, vec![3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn missing_required_column_is_a_header_error() {
        let err = read("source_id,ra\n1,2\n", Some(2016.0)).err().unwrap();
        assert_eq!(err, CsvError::Header("no `dec` column".into()));
        assert!(read("", Some(2016.0)).is_err());
    }
}
