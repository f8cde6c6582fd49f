//! `percolate bench`, run for real with tiny sizes: the JSON it writes, and the baseline check.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const OPERATIONS: [&str; 9] = [
    "get",
    "put",
    "batch_1000",
    "batch_1000_embeddings",
    "knn_k10",
    "knn_k10_filtered",
    "traverse_depth3",
    "text_search",
    "recall",
];

/// Runs `percolate bench` with tiny sizes on synthetic data, RocksDB only, plus `extra`.
fn bench(dir: &Path, extra: &[&str]) -> Output {
    bench_with(dir, &["--synthetic", "--resources", "2000"], extra)
}

/// Runs `percolate bench` with tiny sizes, RocksDB only, with `data` (the data flags) and
/// `extra`.
fn bench_with(dir: &Path, data: &[&str], extra: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_percolate"));
    command
        .args(["bench", "--only", "rocksdb"])
        .args(data)
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

/// Writes an `.fbin` file of `rows` (each of `dimension` floats).
fn write_fbin(path: &Path, dimension: usize, rows: &[f32]) {
    let mut bytes = Vec::new();
    bytes.extend(((rows.len() / dimension) as u32).to_le_bytes());
    bytes.extend((dimension as u32).to_le_bytes());
    bytes.extend(rows.iter().flat_map(|x| x.to_le_bytes()));
    std::fs::write(path, bytes).expect("write fbin");
}

#[test]
fn a_dataset_of_its_own_shape_is_benchmarked_against_its_ground_truth() {
    // 1500 x 8-d, 20 queries, a ring graph: nothing like WordNet.
    let (n, dimension, queries) = (1500usize, 8usize, 20usize);
    let mut rng = percolate::bench::dataset::XorShift(99);
    let mut vectors =
        |count: usize| -> Vec<f32> { (0..count * dimension).map(|_| rng.normal()).collect() };
    let base = vectors(n);
    let query = vectors(queries);
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("mine");
    std::fs::create_dir(&data).expect("dataset dir");
    write_fbin(&data.join("base.fbin"), dimension, &base);
    write_fbin(&data.join("query.fbin"), dimension, &query);
    let cosine = |a: &[f32], b: &[f32]| {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        dot / (a.iter().map(|x| x * x).sum::<f32>().sqrt()
            * b.iter().map(|x| x * x).sum::<f32>().sqrt())
    };
    let mut gt = Vec::new();
    gt.extend((queries as u32).to_le_bytes());
    gt.extend(10u32.to_le_bytes());
    for q in query.chunks_exact(dimension) {
        let mut rows: Vec<usize> = (0..n).collect();
        rows.sort_by(|&a, &b| {
            let row = |i: usize| &base[i * dimension..(i + 1) * dimension];
            cosine(row(b), q).total_cmp(&cosine(row(a), q))
        });
        gt.extend(rows[..10].iter().flat_map(|&i| (i as u32).to_le_bytes()));
    }
    std::fs::write(data.join("gt.ibin"), gt).expect("write gt");
    let mut edges = Vec::new();
    edges.extend((n as u32).to_le_bytes());
    edges.extend((n as u32).to_le_bytes());
    for i in 0..n as u32 {
        edges.extend(i.to_le_bytes());
        edges.extend(((i + 1) % n as u32).to_le_bytes());
    }
    std::fs::write(data.join("edges.bin"), edges).expect("write edges");

    let results = dir.path().join("results.json");
    let run = bench_with(
        dir.path(),
        &["--dataset", data.to_str().expect("utf-8 path")],
        &["--json", results.to_str().expect("utf-8 path")],
    );
    assert!(run.status.success(), "{}", describe(&run));
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("1500 resources x 8-d") && stdout.contains("gt.ibin"), "{stdout}");
    // The ring gives every entity exactly 3 others within depth 3.
    assert!(stdout.contains("reaches on average 3.0 entities on the dataset's graph"), "{stdout}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&results).expect("results")).expect("JSON");
    let knn = rows(&report).iter().find(|r| r["operation"] == "knn_k10").expect("knn row");
    assert!(knn["recall_at_10"].as_f64().is_some_and(|r| r >= 0.9), "{knn}");
    assert!(rows(&report).iter().any(|r| r["operation"] == "traverse_depth3_powerlaw"));
}
