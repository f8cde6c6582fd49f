//! `percolate bench --vector-precision f32,f16,int8`: the RocksDB vector index measured at each
//! precision on the same data, each in a child process (this binary, with `--precision-child`)
//! so each resident set is its own; prints one table with ratios to the first precision.

use std::process::{Command, Stdio};

use percolate::bench::dataset::Dataset;
use percolate::bench::{self, BenchData, PrecisionRow, Sizes};
use percolate::rocks::VectorPrecision;
use percolate::{Error, Result};

use super::{BenchArgs, bad};

/// The prefix of the line a child prints its row on.
const ROW: &str = "precision-row: ";

/// Runs the comparison (or, in a child, one precision).
pub(super) async fn run(
    list: &str,
    args: &BenchArgs,
    source: Option<(String, Dataset)>,
) -> Result<()> {
    let precisions: Vec<VectorPrecision> = list
        .split(',')
        .map(str::parse)
        .collect::<Result<_>>()
        .map_err(|e| bad("--vector-precision", e))?;
    let ef = args.ef_search.unwrap_or(64);
    if args.precision_child {
        let [precision] = precisions[..] else {
            return Err(bad("--vector-precision", "a child measures one precision"));
        };
        let sizes = Sizes::default();
        let resources =
            args.resources.unwrap_or_else(|| source.as_ref().map_or(50_000, |(_, d)| d.len()));
        let data = BenchData::prepare(source, resources, args.queries, sizes.seed)?;
        let scratch;
        let root = match &args.dir {
            Some(dir) => dir.join(precision.as_str()),
            None => {
                scratch = tempfile::tempdir().map_err(|e| bad("temporary directory", e))?;
                scratch.path().to_path_buf()
            }
        };
        let row = bench::measure_precision(&root, data, precision, ef).await?;
        let json = serde_json::to_string(&row).map_err(|e| bad("row", e))?;
        println!("{ROW}{json}");
        return Ok(());
    }
    let source_name =
        source.as_ref().map_or("clustered synthetic 384-d vectors".to_owned(), |(n, _)| n.clone());
    println!("data: {source_name}; HNSW ef_search {ef}; each precision in its own process");
    let mut rows = Vec::new();
    for precision in precisions {
        println!("{precision}: loading, indexing, searching");
        rows.push(child(precision, args)?);
    }
    println!("\n{}", bench::precision_table(&rows));
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&rows).map_err(|e| bad("--json", e))?;
        std::fs::write(path, text + "\n")
            .map_err(|e| bad("--json", format!("{}: {e}", path.display())))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Runs this binary on one precision with the same data options and reads its row.
fn child(precision: VectorPrecision, args: &BenchArgs) -> Result<PrecisionRow> {
    let exe = std::env::current_exe().map_err(|e| bad("--vector-precision", e))?;
    let mut command = Command::new(exe);
    command.args(["bench", "--precision-child", "--vector-precision", precision.as_str()]);
    command.args(["--queries", &args.queries.to_string()]);
    if let Some(dataset) = &args.dataset {
        command.arg("--dataset").arg(dataset);
    }
    if args.synthetic {
        command.arg("--synthetic");
    }
    if let Some(n) = args.resources {
        command.args(["--resources", &n.to_string()]);
    }
    if let Some(ef) = args.ef_search {
        command.args(["--ef-search", &ef.to_string()]);
    }
    if let Some(dir) = &args.dir {
        command.arg("--dir").arg(dir);
    }
    let output =
        command.stderr(Stdio::inherit()).output().map_err(|e| bad("--vector-precision", e))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let row = stdout.lines().find_map(|line| line.strip_prefix(ROW));
    match (output.status.success(), row) {
        (true, Some(json)) => serde_json::from_str(json).map_err(|e| bad("--vector-precision", e)),
        _ => Err(Error::invalid(
            "--vector-precision",
            format!("the {precision} run failed ({}): {}", output.status, stdout.trim()),
        )),
    }
}
