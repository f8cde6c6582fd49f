//! `percolate bench`: the design document's performance table, measured on RocksDB (a
//! temporary store by default) and, when the settings name a PostgreSQL server, on PostgreSQL
//! in the same run, with `--json` results and a `--baseline` regression check.
//!
//! The workload and the measurements live in [`percolate::bench`]; this file picks the
//! providers, draws the progress bar and prints.

use std::path::{Path, PathBuf};
use std::time::Instant;

use percolate::bench::dataset::Dataset;
use percolate::bench::{
    self, BenchData, BenchProvider, LoadProgress, Report, Row, Sizes, Workload,
};
use percolate::config::Settings;
#[cfg(feature = "postgres")]
use percolate::postgres::PgProvider;
#[cfg(feature = "rocksdb")]
use percolate::rocks::RocksProvider;
use percolate::{Error, MemoryEngine, Result};

use super::{BenchArgs, bad, default_dataset, progress_bar};

/// What every provider's part of a run reads: the settings, the arguments, the data and the
/// sizes it was prepared for, the dataset it came from and the scale sizes asked for.
#[derive(Clone, Copy)]
struct Run<'a> {
    settings: &'a Settings,
    args: &'a BenchArgs,
    data: &'a BenchData,
    sizes: &'a Sizes,
    source: Option<&'a (String, Dataset)>,
    scale: Option<&'a [usize]>,
}

/// Runs the bench; `Ok(false)` when the baseline comparison found a regression.
pub(super) async fn run(config: Option<&Path>, args: BenchArgs) -> Result<bool> {
    #[cfg(feature = "rocksdb")]
    if let Some(list) = args.vector_precision.clone() {
        return super::precision::run(&list, &args, load_dataset(&args)?).await.map(|()| true);
    }
    let settings = Settings::load(config)?;
    let threshold = parse_threshold(&args.threshold)?;
    let baseline = args.baseline.as_deref().map(read_report).transpose()?;
    let scale = args.scale.as_deref().map(parse_scale).transpose()?;
    let (run_rocks, run_postgres) = match args.only.as_deref() {
        None => (true, settings.postgres_url.is_some()),
        Some("rocksdb") => (true, false),
        Some("postgres") if settings.postgres_url.is_some() => (false, true),
        Some("postgres") => {
            return Err(bad(
                "--only",
                "postgres needs PERCOLATE_POSTGRES_URL (or a --config file)",
            ));
        }
        Some(other) => {
            return Err(bad("--only", format!("{other:?} (expected rocksdb or postgres)")));
        }
    };

    let started = Instant::now();
    let source = load_dataset(&args)?;
    let sizes = Sizes {
        resources: args
            .resources
            .unwrap_or_else(|| source.as_ref().map_or(50_000, |(_, data)| data.len())),
        entities: args.entities,
        degree: args.degree,
        moments: args.moments,
        queries: args.queries,
        samples: args.samples,
        seconds_per_row: args.seconds_per_row,
        ..Sizes::default()
    };
    let data = BenchData::prepare(source.clone(), sizes.resources, sizes.queries, sizes.seed)?;
    let mut notes = vec![format!(
        "data: {} resources x {}-d from {}; {} queries, recall@10 against {} (prepared in {:.1} s)",
        data.len(),
        data.dataset.dimension,
        data.source,
        data.truth.len(),
        data.truth_source,
        started.elapsed().as_secs_f64()
    )];
    println!("{}", notes[0]);
    if let Some(load) = load_average() {
        notes.push(format!("load average before: {load} ({} cores)", cores()));
        println!("{}", notes[1]);
    }

    let run = Run {
        settings: &settings,
        args: &args,
        data: &data,
        sizes: &sizes,
        source: source.as_ref(),
        scale: scale.as_deref(),
    };
    let mut rows = Vec::new();
    if run_rocks {
        rocks(run, &mut rows, &mut notes).await?;
    }
    if run_postgres {
        postgres(run, &mut rows, &mut notes).await?;
    }

    if let Some(load) = load_average() {
        notes.push(format!("load average after: {load}"));
        println!("load average after: {load}");
    }
    let (scaled, main): (Vec<Row>, Vec<Row>) = rows.iter().cloned().partition(Row::is_scale);
    println!("\n{}", bench::table(&main));
    if !scaled.is_empty() {
        println!("{}", bench::table(&scaled));
        println!("{}", bench::scale_table(&scaled));
    }
    let report = Report { rows, notes };
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| bad("--json", e))?;
        std::fs::write(path, text + "\n")
            .map_err(|e| bad("--json", format!("{}: {e}", path.display())))?;
        println!("wrote {}", path.display());
    }
    let Some(baseline) = baseline else { return Ok(true) };
    let comparison = bench::compare(&baseline, &report, threshold);
    println!("\n{}", comparison.describe(threshold));
    if comparison.regressions.is_empty() {
        return Ok(true);
    }
    let names: Vec<String> = comparison
        .regressions
        .iter()
        .map(|(old, new)| {
            format!(
                "{}/{} ({} -> {})",
                new.provider,
                new.operation,
                bench::format_micros(old.p50_us),
                bench::format_micros(new.p50_us)
            )
        })
        .collect();
    eprintln!("regressed: {}", names.join(", "));
    Ok(false)
}

/// The 1, 5 and 15 minute load averages (Linux): other work on the machine inflates every
/// figure, so the report says how busy it was.
fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// `10%`, `10` (both ten percent) or `2.5%`.
fn parse_threshold(text: &str) -> Result<f64> {
    let number = text.trim().trim_end_matches('%').trim();
    match number.parse::<f64>() {
        Ok(percent) if percent.is_finite() && percent >= 0.0 => Ok(percent / 100.0),
        _ => Err(bad("--threshold", format!("{text:?} is not a percentage"))),
    }
}

/// `10000,100000` (underscores allowed).
fn parse_scale(text: &str) -> Result<Vec<usize>> {
    text.split(',')
        .map(|n| match n.trim().replace('_', "").parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(bad("--scale", format!("{n:?} is not a positive number of records"))),
        })
        .collect()
}

fn read_report(path: &Path) -> Result<Report> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| bad("--baseline", format!("{}: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| bad("--baseline", format!("{}: not a bench report: {e}", path.display())))
}

/// The dataset to bench with: `--dataset` (which must hold `base.fbin`, `query.fbin` and
/// `gt.ibin`), else the shared one when present; `None` for synthetic data.
pub(super) fn load_dataset(args: &BenchArgs) -> Result<Option<(String, Dataset)>> {
    if args.synthetic {
        return Ok(None);
    }
    let dir = match &args.dataset {
        Some(dir) => {
            for file in ["base.fbin", "query.fbin", "gt.ibin"] {
                if !dir.join(file).is_file() {
                    return Err(bad("--dataset", format!("{} has no {file}", dir.display())));
                }
            }
            dir.clone()
        }
        None => match default_dataset() {
            Some(dir) => dir,
            None => return Ok(None),
        },
    };
    let data = Dataset::load(&dir)?;
    let name = dir
        .file_name()
        .map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned());
    Ok(Some((format!("{name} ({})", dir.display()), data)))
}

/// Loads the workload on a bench tenant, measures every row, deletes the tenant; then the
/// `--scale` rows.
async fn bench_provider<P: BenchProvider>(
    engine: &MemoryEngine<P>,
    data: &BenchData,
    sizes: &Sizes,
    source: Option<&(String, Dataset)>,
    scale: Option<&[usize]>,
    rows: &mut Vec<Row>,
    notes: &mut Vec<String>,
) -> Result<()> {
    let name = P::NAME;
    let mut note = |text: String| {
        println!("{text}");
        notes.push(text);
    };
    let id = bench::bench_tenant("bench")?;
    note(format!("{name}: loading tenant {id}"));
    let bar = progress_bar("load");
    let started = Instant::now();
    let loaded = Workload::load(engine, &id, data, sizes, |p: LoadProgress| {
        bar.set_message(p.phase);
        bar.set_length(p.total);
        bar.set_position(p.done);
    })
    .await;
    bar.finish_and_clear();
    let measured = match loaded {
        Ok(workload) => {
            let measured = async {
                let ((dataset_nodes, dataset_edges), (powerlaw_nodes, powerlaw_edges)) =
                    workload.graphs;
                let mut loaded = format!("{name}: loaded {} resources", workload.resources.len());
                if dataset_nodes > 0 {
                    loaded.push_str(&format!(
                        ", the dataset's graph ({dataset_nodes} entities, {dataset_edges} edges)"
                    ));
                }
                if powerlaw_nodes > 0 {
                    loaded.push_str(&format!(
                        ", a power-law graph ({powerlaw_nodes} entities, {powerlaw_edges} edges, \
                         average out-degree {:.1})",
                        powerlaw_edges as f64 / powerlaw_nodes as f64
                    ));
                }
                loaded.push_str(&format!(
                    ", {} moments over a year in {:.1} s",
                    workload.moments,
                    started.elapsed().as_secs_f64()
                ));
                note(loaded);
                let waited = bench::settle(&workload.tenant).await?;
                note(format!("{name}: {} ({:.1} s)", P::INDEX_NOTE, waited.as_secs_f64()));
                let reach = match workload.reach {
                    (dataset, powerlaw) if dataset_nodes > 0 && powerlaw_nodes > 0 => {
                        format!(
                            "{dataset:.1} entities on the dataset's graph, {powerlaw:.1} on the \
                             power-law graph"
                        )
                    }
                    (dataset, _) if dataset_nodes > 0 => {
                        format!("{dataset:.1} entities on the dataset's graph")
                    }
                    (_, powerlaw) => format!("{powerlaw:.1} entities on the power-law graph"),
                };
                note(format!(
                    "{name}: a depth-3 traversal (outgoing edges) reaches on average {reach}"
                ));
                let measured = bench::measure_all(&workload, sizes).await?;
                let (found, probed, took) = workload.check_searchable(10).await?;
                note(format!(
                    "{name}: right after a batch of 1000 embeddings returned ({}), {found} of \
                     {probed} probes found their own resource first",
                    bench::format_micros(took.as_secs_f64() * 1e6)
                ));
                Ok::<_, Error>(measured)
            }
            .await;
            drop(workload);
            measured
        }
        Err(e) => Err(e),
    };
    let deleted = bench::delete_tenant(engine, &id).await;
    rows.extend(measured?);
    deleted?;
    note(format!("{name}: measured and deleted tenant {id}"));
    if let Some(scale) = scale {
        let bar = progress_bar("scale");
        let scaled =
            bench::measure_scale(engine, source, sizes, scale, |n, progress| match progress {
                None => {
                    bar.set_position(0);
                    // suspend, not println: a hidden bar (no terminal) prints nothing.
                    bar.suspend(|| println!("{name}: scale run at {n} records"));
                }
                Some(p) => {
                    bar.set_message(p.phase);
                    bar.set_length(p.total);
                    bar.set_position(p.done);
                }
            })
            .await;
        bar.finish_and_clear();
        rows.extend(scaled?);
    }
    Ok(())
}

#[cfg(feature = "rocksdb")]
#[allow(clippy::too_many_arguments)]
async fn rocks(run: Run<'_>, rows: &mut Vec<Row>, notes: &mut Vec<String>) -> Result<()> {
    let Run { settings, args, data, sizes, source, scale } = run;
    let temp;
    let root: PathBuf = match &args.dir {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::Builder::new().prefix("percolate-bench-").tempdir().map_err(|e| {
                Error::Backend { provider: "temporary directory", source: Box::new(e) }
            })?;
            temp.path().to_owned()
        }
    };
    // The settings' master key, when one is configured, so an encrypted store is measured.
    let mut config = settings.rocks_config_at(&root)?;
    if let Some(ef) = args.ef_search {
        config.hnsw.ef_search = ef;
    }
    let encrypted = if config.master_key.is_some() { "encrypted at rest" } else { "not encrypted" };
    let engine = MemoryEngine::new(RocksProvider::open(config)?);
    let text = format!("rocksdb: store at {} ({encrypted})", root.display());
    println!("{text}");
    notes.push(text);
    bench_provider(&engine, data, sizes, source, scale, rows, notes).await
}

#[cfg(not(feature = "rocksdb"))]
#[allow(clippy::too_many_arguments)]
async fn rocks(_: Run<'_>, _: &mut Vec<Row>, notes: &mut Vec<String>) -> Result<()> {
    let text = "rocksdb: not compiled into this build (Cargo feature rocksdb): skipped".to_owned();
    println!("{text}");
    notes.push(text);
    Ok(())
}

#[cfg(feature = "postgres")]
#[allow(clippy::too_many_arguments)]
async fn postgres(run: Run<'_>, rows: &mut Vec<Row>, notes: &mut Vec<String>) -> Result<()> {
    let Run { settings, args, data, sizes, source, scale } = run;
    let mut config = settings.pg_config()?;
    if let Some(ef) = args.ef_search {
        config = config.with_ef_search(ef);
    }
    let engine = MemoryEngine::new(PgProvider::connect(config).await?);
    bench_provider(&engine, data, sizes, source, scale, rows, notes).await
}

#[cfg(not(feature = "postgres"))]
#[allow(clippy::too_many_arguments)]
async fn postgres(_: Run<'_>, _: &mut Vec<Row>, notes: &mut Vec<String>) -> Result<()> {
    let text = "postgres: PERCOLATE_POSTGRES_URL is set but this build lacks the Cargo feature \
                postgres (cargo run --release --features postgres -- bench): skipped"
        .to_owned();
    println!("{text}");
    notes.push(text);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_are_percentages_with_or_without_the_sign() {
        assert_eq!(parse_threshold("10%").ok(), Some(0.10));
        assert_eq!(parse_threshold("2.5").ok(), Some(0.025));
        assert!(parse_threshold("-1%").is_err() && parse_threshold("fast").is_err());
    }

    #[test]
    fn scale_lists_are_positive_record_counts() {
        assert_eq!(parse_scale("10_000, 100000").ok(), Some(vec![10_000, 100_000]));
        assert!(parse_scale("10000,0").is_err() && parse_scale("").is_err());
    }
}
