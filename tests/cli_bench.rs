//! `percolate bench`, run for real with tiny sizes: the JSON it writes, and the baseline check.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const OPERATIONS: [&str; 7] = [
    "get",
    "put",
    "batch_1000",
    "batch_1000_embeddings",
    "knn_k10",
    "knn_k10_filtered",
    "traverse_depth3",
];

/// Runs `percolate bench` with tiny sizes on synthetic data, RocksDB only, plus `extra`.
fn bench(dir: &Path, extra: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_percolate"));
    command
        .args(["bench", "--synthetic", "--only", "rocksdb", "--resources", "2000"])
        .args(["--entities", "1000", "--moments", "200", "--queries", "50"])
        .args(["--samples", "200", "--seconds-per-row", "0.5", "--dir"])
        .arg(dir.join("store"))
        .args(extra)
        .current_dir(dir);
    for key in [
        "PERCOLATE_STORAGE_PROVIDER",
        "PERCOLATE_POSTGRES_URL",
        "PERCOLATE_POSTGRES_ADMIN_URL",
        "PERCOLATE_CONFIG",
        "PERCOLATE_DATASET",
        "PERCOLATE_MASTER_KEY",
        "PERCOLATE_MASTER_KEY_FILE",
    ] {
        command.env_remove(key);
    }
    command.output().expect("run percolate bench")
}

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn rows(report: &Value) -> &Vec<Value> {
    report["rows"].as_array().expect("rows is an array")
}

#[test]
fn bench_writes_every_row_and_fails_only_on_a_regression() {
    let dir = tempfile::tempdir().expect("temp dir");
    let results = dir.path().join("results.json");
    let run = bench(dir.path(), &["--json", results.to_str().expect("utf-8 path")]);
    assert!(run.status.success(), "{}", describe(&run));
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("knn_k10_filtered") && stdout.contains("design"), "{stdout}");

    let text = std::fs::read_to_string(&results).expect("results written");
    let report: Value = serde_json::from_str(&text).expect("results are JSON");
    for operation in OPERATIONS {
        let row = rows(&report)
            .iter()
            .find(|r| r["operation"] == operation)
            .unwrap_or_else(|| panic!("no {operation} row in {text}"));
        assert_eq!(row["provider"], "rocksdb");
        for field in ["p50_us", "p99_us", "ops_per_s"] {
            let value = row[field].as_f64().unwrap_or_else(|| panic!("{operation}.{field}"));
            assert!(value > 0.0, "{operation}.{field} = {value}");
        }
        assert!(row["n"].as_u64().is_some_and(|n| n >= 5), "{operation}: {row}");
        assert!(row["p99_us"].as_f64() >= row["p50_us"].as_f64(), "{operation}: {row}");
        match operation {
            "knn_k10" | "knn_k10_filtered" => {
                let recall = row["recall_at_10"].as_f64().expect("recall");
                assert!((0.9..=1.0).contains(&recall), "{operation} recall {recall}");
            }
            _ => assert!(row["recall_at_10"].is_null(), "{operation}: {row}"),
        }
    }
    // The bench tenant is deleted; the store directory it was given is left.
    let left: Vec<_> = std::fs::read_dir(dir.path().join("store"))
        .expect("store kept")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .collect();
    assert!(left.is_empty(), "tenants left behind: {left:?}");

    // A baseline a hundred times faster than anything measured: every row regressed.
    let mut fast = report.clone();
    for row in fast["rows"].as_array_mut().expect("rows") {
        row["p50_us"] = Value::from(row["p50_us"].as_f64().expect("p50") / 100.0);
    }
    let fast_path = dir.path().join("fast.json");
    std::fs::write(&fast_path, fast.to_string()).expect("write baseline");
    let run = bench(dir.path(), &["--baseline", fast_path.to_str().expect("utf-8 path")]);
    assert_eq!(run.status.code(), Some(6), "{}", describe(&run));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("rocksdb/get") && stderr.contains("rocksdb/knn_k10"), "{stderr}");

    // Against itself with a generous threshold: no regression.
    let run = bench(
        dir.path(),
        &["--baseline", results.to_str().expect("utf-8 path"), "--threshold", "1000%"],
    );
    assert!(run.status.success(), "{}", describe(&run));
    assert!(String::from_utf8_lossy(&run.stdout).contains("compared with the baseline"));
}

#[test]
fn a_dataset_without_ground_truth_is_rejected() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_percolate"))
        .args(["bench", "--dataset"])
        .arg(dir.path())
        .env_remove("PERCOLATE_POSTGRES_URL")
        .output()
        .expect("run percolate bench");
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("base.fbin"), "{}", describe(&output));
}
