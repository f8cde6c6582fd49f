//! Bench results: rows, their JSON form, the printed tables, and the comparison with a
//! baseline.

use serde::{Deserialize, Serialize};

use super::Goal;
use super::measure::Latencies;

/// One measured row, as printed and as written to JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// The provider's name (`rocksdb`, `postgres`).
    pub provider: String,
    /// The operation (`get`, `knn_k10`, …; scale rows end in `_n<records>`).
    pub operation: String,
    /// Median latency of a single call, in µs.
    pub p50_us: f64,
    /// 99th-percentile latency, in µs.
    pub p99_us: f64,
    /// Calls per second of one client calling back to back.
    pub ops_per_s: f64,
    /// recall@10 against the exact neighbours (kNN rows only).
    pub recall_at_10: Option<f64>,
    /// Timed calls.
    pub n: usize,
    /// Resources in the tenant when measured.
    #[serde(default)]
    pub records: usize,
    /// The design document's figure for the row.
    #[serde(default)]
    pub design_target: Option<String>,
    /// Whether the p50 is within the design document's figure.
    #[serde(default)]
    pub design_met: Option<bool>,
    /// This project's goal for the row.
    #[serde(default)]
    pub goal: Option<String>,
    /// Whether the goal is met.
    #[serde(default)]
    pub goal_met: Option<bool>,
}

impl Row {
    /// A row from its latencies, judged against the design target and the goal.
    pub fn new(
        provider: &str,
        operation: &str,
        latencies: &Latencies,
        recall_at_10: Option<f64>,
        records: usize,
        design_target: Option<(&str, f64)>,
        goal: Option<Goal>,
    ) -> Self {
        let micros = |q| latencies.quantile(q).as_secs_f64() * 1e6;
        let p50_us = micros(0.5);
        Self {
            provider: provider.to_owned(),
            operation: operation.to_owned(),
            p50_us,
            p99_us: micros(0.99),
            ops_per_s: latencies.ops_per_second(),
            recall_at_10,
            n: latencies.len(),
            records,
            design_target: design_target.map(|(text, _)| text.to_owned()),
            design_met: design_target.map(|(_, bound)| p50_us <= bound),
            goal: goal.map(|g| g.describe()),
            goal_met: goal.map(|g| g.met(p50_us, recall_at_10)),
        }
    }
}

impl Row {
    /// Whether this is a `--scale` row (its operation ends in `_n<records>`).
    pub fn is_scale(&self) -> bool {
        self.operation
            .rsplit_once("_n")
            .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    }
}

/// The JSON document of `--json`: the rows and the notes printed with them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Every measured row.
    pub rows: Vec<Row>,
    /// What the run loaded and how (dataset, sizes, index waits).
    #[serde(default)]
    pub notes: Vec<String>,
}

/// `µs` as a short human figure: `3.1 µs`, `0.52 ms`, `1.20 s`.
pub fn format_micros(micros: f64) -> String {
    if micros < 1_000.0 {
        format!("{micros:.1} µs")
    } else if micros < 1_000_000.0 {
        format!("{:.2} ms", micros / 1e3)
    } else {
        format!("{:.2} s", micros / 1e6)
    }
}

fn format_rate(per_second: f64) -> String {
    if per_second >= 1e6 {
        format!("{:.2}M", per_second / 1e6)
    } else if per_second >= 1e3 {
        format!("{:.1}k", per_second / 1e3)
    } else {
        format!("{per_second:.1}")
    }
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "-",
    }
}

/// Lays out rows of cells under headers, columns padded.
fn layout(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> =
            cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}", w = *w)).collect();
        padded.join("  ").trim_end().to_owned() + "\n"
    };
    let mut out = line(headers.to_vec());
    out.push_str(&line(
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect(),
    ));
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// The main table: operation, design target, p50, p99, throughput, recall, and verdicts.
pub fn table(rows: &[Row]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            let mut throughput = format!("{} ops/s", format_rate(row.ops_per_s));
            if row.operation.starts_with("batch_") {
                throughput.push_str(&format!(" ({} rec/s)", format_rate(row.ops_per_s * 1e3)));
            }
            vec![
                row.provider.clone(),
                row.operation.clone(),
                row.design_target.clone().unwrap_or_else(|| "-".into()),
                format_micros(row.p50_us),
                format_micros(row.p99_us),
                throughput,
                row.recall_at_10.map_or_else(|| "-".into(), |r| format!("{r:.3}")),
                row.n.to_string(),
                verdict(row.design_met).to_owned(),
                match &row.goal {
                    Some(goal) => format!("{} {goal}", verdict(row.goal_met)),
                    None => "-".into(),
                },
            ]
        })
        .collect();
    layout(
        &[
            "provider",
            "operation",
            "design",
            "p50",
            "p99",
            "throughput",
            "recall@10",
            "n",
            "design met",
            "goal (p50)",
        ],
        &cells,
    )
}

/// The `--scale` table: for each provider and size, kNN and traversal p50, and how each grew
/// from the previous size next to how `log2(records)` grew.
pub fn scale_table(rows: &[Row]) -> String {
    let mut cells = Vec::new();
    let mut previous: Option<(&str, usize, f64, f64)> = None;
    let knn = rows.iter().filter(|r| r.is_scale() && r.operation.starts_with("knn_k10_n"));
    for row in knn {
        let traverse = rows.iter().find(|t| {
            t.provider == row.provider
                && t.records == row.records
                && t.is_scale()
                && t.operation.starts_with("traverse_depth3_n")
        });
        let traverse_p50 = traverse.map_or(0.0, |t| t.p50_us);
        let growth = match previous {
            Some((provider, records, knn_p50, traverse_p50_before))
                if provider == row.provider && records > 1 =>
            {
                let log_ratio = (row.records as f64).log2() / (records as f64).log2();
                format!(
                    "x{:.2} knn, x{:.2} traversal (log2 N x{log_ratio:.2}, N x{:.0})",
                    row.p50_us / knn_p50.max(f64::MIN_POSITIVE),
                    traverse_p50 / traverse_p50_before.max(f64::MIN_POSITIVE),
                    row.records as f64 / records as f64
                )
            }
            _ => "-".into(),
        };
        cells.push(vec![
            row.provider.clone(),
            row.records.to_string(),
            format_micros(row.p50_us),
            row.recall_at_10.map_or_else(|| "-".into(), |r| format!("{r:.3}")),
            traverse.map_or_else(|| "-".into(), |t| format_micros(t.p50_us)),
            growth,
        ]);
        previous = Some((&row.provider, row.records, row.p50_us, traverse_p50));
    }
    layout(
        &["provider", "records", "knn_k10 p50", "recall@10", "traverse_depth3 p50", "growth"],
        &cells,
    )
}

/// How a run compares with a baseline.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Comparison {
    /// Rows whose p50 grew by more than the threshold: (baseline, current).
    pub regressions: Vec<(Row, Row)>,
    /// Rows present in both, within the threshold or faster: (baseline, current).
    pub unchanged: Vec<(Row, Row)>,
    /// Baseline rows this run did not measure: `provider/operation`.
    pub missing: Vec<String>,
}

impl Comparison {
    /// The comparison as text: every common row with its change, regressions marked.
    pub fn describe(&self, threshold: f64) -> String {
        let mut cells = Vec::new();
        let mut all: Vec<(&(Row, Row), bool)> =
            self.regressions.iter().map(|p| (p, true)).collect();
        all.extend(self.unchanged.iter().map(|p| (p, false)));
        for ((old, new), regressed) in all {
            cells.push(vec![
                new.provider.clone(),
                new.operation.clone(),
                format_micros(old.p50_us),
                format_micros(new.p50_us),
                format!("{:+.1}%", (new.p50_us / old.p50_us.max(f64::MIN_POSITIVE) - 1.0) * 100.0),
                if regressed { "REGRESSED".into() } else { "ok".into() },
            ]);
        }
        let mut out = format!(
            "compared with the baseline (a p50 more than {:.0}% slower is a regression):\n",
            threshold * 100.0
        );
        out.push_str(&layout(
            &["provider", "operation", "baseline p50", "p50", "change", ""],
            &cells,
        ));
        for missing in &self.missing {
            out.push_str(&format!("not measured in this run: {missing}\n"));
        }
        out
    }
}

/// Compares `current` with `baseline` row by row (matched by provider and operation): a p50
/// above `baseline × (1 + threshold)` is a regression.
pub fn compare(baseline: &Report, current: &Report, threshold: f64) -> Comparison {
    let mut comparison = Comparison::default();
    for old in &baseline.rows {
        let Some(new) = current
            .rows
            .iter()
            .find(|r| r.provider == old.provider && r.operation == old.operation)
        else {
            comparison.missing.push(format!("{}/{}", old.provider, old.operation));
            continue;
        };
        let pair = (old.clone(), new.clone());
        if new.p50_us > old.p50_us * (1.0 + threshold) {
            comparison.regressions.push(pair);
        } else {
            comparison.unchanged.push(pair);
        }
    }
    comparison
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(operation: &str, p50_us: f64) -> Row {
        Row {
            provider: "rocksdb".into(),
            operation: operation.into(),
            p50_us,
            p99_us: p50_us * 2.0,
            ops_per_s: 1e6 / p50_us,
            recall_at_10: None,
            n: 100,
            records: 1000,
            design_target: None,
            design_met: None,
            goal: None,
            goal_met: None,
        }
    }

    #[test]
    fn a_p50_beyond_the_threshold_is_a_regression() {
        let baseline = Report { rows: vec![row("get", 10.0), row("put", 10.0)], notes: vec![] };
        let current = Report { rows: vec![row("get", 10.9), row("put", 11.1)], notes: vec![] };
        let comparison = compare(&baseline, &current, 0.10);
        assert_eq!(comparison.regressions.len(), 1);
        assert_eq!(comparison.regressions[0].1.operation, "put");
        assert!(comparison.describe(0.10).contains("REGRESSED"));
    }

    #[test]
    fn rows_missing_from_the_run_are_listed_not_failed() {
        let baseline = Report { rows: vec![row("knn_k10", 100.0)], notes: vec![] };
        let comparison = compare(&baseline, &Report::default(), 0.10);
        assert!(comparison.regressions.is_empty());
        assert_eq!(comparison.missing, vec!["rocksdb/knn_k10".to_owned()]);
    }

    #[test]
    fn reports_round_trip_through_json() {
        let report = Report { rows: vec![row("get", 3.5)], notes: vec!["note".into()] };
        let text = serde_json::to_string(&report).expect("serialize");
        assert_eq!(serde_json::from_str::<Report>(&text).expect("parse"), report);
    }
}
