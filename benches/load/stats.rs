//! Counting and summarising: which sequence numbers arrived, latency
//! percentiles, and the per-scenario report (runs, medians, targets).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::json;

/// Cores of load from outside the bench and its server above which a run's
/// timings are flagged as disturbed.
pub const NOISY_CPU: f64 = 0.3;

/// A set of sequence numbers (a growable bitset).
#[derive(Debug, Default, Clone)]
pub struct SeqSet {
    words: Vec<u64>,
    len: u64,
}

impl SeqSet {
    /// Adds `seq`; false when it was already there.
    pub fn insert(&mut self, seq: u64) -> bool {
        let word = (seq / 64) as usize;
        if word >= self.words.len() {
            self.words.resize(word + 1, 0);
        }
        let bit = 1u64 << (seq % 64);
        if self.words[word] & bit != 0 {
            return false;
        }
        self.words[word] |= bit;
        self.len += 1;
        true
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn union_with(&mut self, other: &SeqSet) {
        if other.words.len() > self.words.len() {
            self.words.resize(other.words.len(), 0);
        }
        for (mine, theirs) in self.words.iter_mut().zip(&other.words) {
            *mine |= theirs;
        }
        self.len = self.words.iter().map(|w| u64::from(w.count_ones())).sum();
    }

    /// How many members of `self` are missing from `other`.
    pub fn missing_from(&self, other: &SeqSet) -> u64 {
        self.words
            .iter()
            .enumerate()
            .map(|(i, word)| {
                let theirs = other.words.get(i).copied().unwrap_or(0);
                u64::from((word & !theirs).count_ones())
            })
            .sum()
    }

    /// How many members of `self` are not in `allowed`.
    pub fn extra_over(&self, allowed: &SeqSet) -> u64 {
        self.missing_from(allowed)
    }
}

/// Percentiles of latencies in microseconds (sorts in place).
#[derive(Debug, Clone, Copy, Default)]
pub struct LatencySummary {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn summarise(latencies_us: &mut [u32]) -> LatencySummary {
    latencies_us.sort_unstable();
    let ms = |us: u32| f64::from(us) / 1000.0;
    LatencySummary {
        p50_ms: ms(percentile(latencies_us, 50.0)),
        p99_ms: ms(percentile(latencies_us, 99.0)),
        max_ms: ms(latencies_us.last().copied().unwrap_or(0)),
    }
}

/// The median (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    })
}

#[derive(Debug, Clone, Copy)]
pub enum Target {
    AtMost(f64),
    AtLeast(f64),
}

impl Target {
    pub fn met(self, value: f64) -> bool {
        match self {
            Target::AtMost(limit) => value <= limit,
            Target::AtLeast(limit) => value >= limit,
        }
    }

    fn describe(self, decimals: usize) -> String {
        match self {
            Target::AtMost(limit) => {
                if limit == 0.0 {
                    "= 0".into()
                } else {
                    format!("≤ {}", format_number(limit, decimals))
                }
            }
            Target::AtLeast(limit) => format!("≥ {}", format_number(limit, decimals)),
        }
    }

    fn describe_ascii(self) -> String {
        match self {
            Target::AtMost(limit) => format!("<= {limit}"),
            Target::AtLeast(limit) => format!(">= {limit}"),
        }
    }
}

/// One reported figure: its JSON key, its label, how to print it, and the
/// target it is held to, if any.
#[derive(Debug, Clone, Copy)]
pub struct Figure {
    pub key: &'static str,
    pub label: &'static str,
    pub decimals: usize,
    pub target: Option<Target>,
}

pub const fn figure(key: &'static str, label: &'static str, decimals: usize) -> Figure {
    Figure {
        key,
        label,
        decimals,
        target: None,
    }
}

pub const fn goal(
    key: &'static str,
    label: &'static str,
    decimals: usize,
    target: Target,
) -> Figure {
    Figure {
        key,
        label,
        decimals,
        target: Some(target),
    }
}

/// The figures one run measured, by key.
pub type RunFigures = BTreeMap<&'static str, f64>;

/// Every run of one scenario.
pub struct ScenarioReport {
    pub name: &'static str,
    pub about: String,
    pub figures: Vec<Figure>,
    pub runs: Vec<Result<RunFigures, String>>,
}

/// A figure's median over the successful runs, and whether it meets its target.
pub struct Verdict {
    pub median: Option<f64>,
    pub met: Option<bool>,
}

impl ScenarioReport {
    fn values(&self, key: &str) -> Vec<f64> {
        self.runs
            .iter()
            .filter_map(|run| run.as_ref().ok()?.get(key).copied())
            .collect()
    }

    pub fn verdict(&self, figure: &Figure) -> Verdict {
        let median = median(&self.values(figure.key));
        let met = figure
            .target
            .map(|target| median.is_some_and(|m| target.met(m)));
        Verdict { median, met }
    }

    /// True when every target is met by its median (and some run succeeded).
    pub fn all_met(&self) -> bool {
        self.figures
            .iter()
            .all(|figure| self.verdict(figure).met.unwrap_or(true))
            && self.runs.iter().any(Result::is_ok)
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "\n== {} — {}", self.name, self.about);
        let mut rows = vec![self.header_row()];
        rows.extend(self.figures.iter().map(|figure| self.figure_row(figure)));
        write_aligned(&mut out, &rows);
        self.write_run_notes(&mut out);
        let _ = writeln!(
            out,
            "{}: {}",
            self.name,
            if self.all_met() {
                "all targets met"
            } else {
                "targets NOT met"
            }
        );
        out
    }

    /// The table's header: one column per run, then the verdict's columns.
    fn header_row(&self) -> Vec<String> {
        let mut header = vec!["figure".to_owned()];
        for i in 0..self.runs.len() {
            header.push(format!("run {}", i + 1));
        }
        header.extend(["median".into(), "target".into(), "".into()]);
        header
    }

    /// One figure's row: its value in every run, the median, the target and
    /// whether the median meets it.
    fn figure_row(&self, figure: &Figure) -> Vec<String> {
        let mut row = vec![figure.label.to_owned()];
        for run in &self.runs {
            row.push(match run {
                Ok(values) => values
                    .get(figure.key)
                    .map(|v| format_number(*v, figure.decimals))
                    .unwrap_or_else(|| "-".into()),
                Err(_) => "failed".into(),
            });
        }
        let verdict = self.verdict(figure);
        row.push(
            verdict
                .median
                .map(|m| format_number(m, figure.decimals))
                .unwrap_or_else(|| "-".into()),
        );
        row.push(
            figure
                .target
                .map(|t| t.describe(figure.decimals))
                .unwrap_or_default(),
        );
        row.push(match verdict.met {
            Some(true) => "met".into(),
            Some(false) => "NOT MET".into(),
            None => String::new(),
        });
        row
    }

    /// Below the table: why a run failed, and which runs shared the machine
    /// with enough other load to make their timings pessimistic.
    fn write_run_notes(&self, out: &mut String) {
        for (i, run) in self.runs.iter().enumerate() {
            match run {
                Err(err) => {
                    let _ = writeln!(out, "run {} failed: {err}", i + 1);
                }
                Ok(values) => {
                    if let Some(other) = values.get("other_cpu").filter(|v| **v > NOISY_CPU) {
                        let _ = writeln!(
                            out,
                            "note: run {} shared the machine with {other:.2} cores of other load; its timings are pessimistic",
                            i + 1
                        );
                    }
                }
            }
        }
    }

    /// One JSON line.
    pub fn json_line(&self) -> String {
        let mut figures = serde_json::Map::new();
        for figure in &self.figures {
            let verdict = self.verdict(figure);
            let runs: Vec<serde_json::Value> = self
                .runs
                .iter()
                .map(|run| match run {
                    Ok(values) => json!(values.get(figure.key)),
                    Err(_) => serde_json::Value::Null,
                })
                .collect();
            let mut entry = json!({ "median": verdict.median, "runs": runs });
            if let Some(target) = figure.target {
                entry["target"] = json!(target.describe_ascii());
                entry["met"] = json!(verdict.met);
            }
            figures.insert(figure.key.to_owned(), entry);
        }
        let errors: Vec<&String> = self.runs.iter().filter_map(|r| r.as_ref().err()).collect();
        json!({
            "scenario": self.name,
            "about": self.about,
            "runs": self.runs.len(),
            "runs_ok": self.runs.iter().filter(|r| r.is_ok()).count(),
            "met": self.all_met(),
            "figures": figures,
            "errors": errors,
        })
        .to_string()
    }
}

/// Writes `rows` as columns: the first left-aligned, the others right-aligned,
/// two spaces apart, no trailing blanks.
fn write_aligned(out: &mut String, rows: &[Vec<String>]) {
    let columns = rows[0].len();
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let pad = widths[c] - cell.chars().count();
            if c == 0 {
                let _ = write!(line, "{cell}{}", " ".repeat(pad));
            } else {
                let _ = write!(line, "  {}{cell}", " ".repeat(pad));
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

/// Thousands separated by `,`, `decimals` after the point.
pub fn format_number(value: f64, decimals: usize) -> String {
    let text = format!("{:.*}", decimals, value.abs());
    let (int, frac) = match text.split_once('.') {
        Some((i, f)) => (i.to_owned(), Some(f.to_owned())),
        None => (text, None),
    };
    let mut grouped = String::new();
    for (i, ch) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    let sign = if value < 0.0 && value.abs() >= 0.5 * 10f64.powi(-(decimals as i32)) {
        "-"
    } else {
        ""
    };
    match frac {
        Some(frac) => format!("{sign}{grouped}.{frac}"),
        None => format!("{sign}{grouped}"),
    }
}
