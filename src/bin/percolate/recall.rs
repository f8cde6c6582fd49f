//! `percolate recall`: one query fusing full text and a vector over a tenant's resources,
//! restricted by a time window and a metadata filter. Owns the command's flags and its output;
//! the fusion is the engine's.

#[allow(unused_imports)]
use super::*;
use percolate::{RecallQuery, RecallWeights};

/// The flags of `percolate recall`.
#[derive(clap::Args)]
pub(crate) struct RecallArgs {
    /// The tenant.
    #[arg(long)]
    tenant: String,
    /// Query text for the full-text signal (BM25 over content).
    #[arg(long)]
    text: Option<String>,
    /// The query vector as a JSON array, for the vector signal.
    #[arg(long, conflicts_with = "vector_file")]
    vector: Option<String>,
    /// A file holding the query vector as a JSON array.
    #[arg(long, value_name = "FILE")]
    vector_file: Option<PathBuf>,
    /// Only resources created at or after this time (RFC 3339 or microseconds).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Only resources created at or before this time.
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// A metadata filter, e.g. '{"lang": "en"}'.
    #[arg(long, value_name = "JSON")]
    filter: Option<String>,
    /// How many results.
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// How many candidates each signal contributes (default max(4k, 50)).
    #[arg(long)]
    candidates: Option<usize>,
    /// The weight of the text signal in the fusion.
    #[arg(long, default_value_t = 1.0)]
    text_weight: f64,
    /// The weight of the vector signal in the fusion.
    #[arg(long, default_value_t = 1.0)]
    vector_weight: f64,
    /// Include the resources' embeddings in the output.
    #[arg(long)]
    embeddings: bool,
}

/// Runs `percolate recall` on one provider.
pub(crate) async fn run<P: Provider>(
    engine: &MemoryEngine<P>,
    args: RecallArgs,
    output: Output,
) -> percolate::Result<()> {
    let vector = match (args.vector, args.vector_file) {
        (Some(text), _) => Some(text),
        (None, Some(path)) => Some(read_file(&path)?),
        (None, None) => None,
    };
    let mut query = RecallQuery::new(args.k);
    query.text = args.text;
    query.vector = vector
        .map(|text| {
            serde_json::from_str::<Vec<f32>>(&text)
                .map_err(|e| bad("vector", format!("not a JSON array of numbers: {e}")))
        })
        .transpose()?;
    if args.since.is_some() || args.until.is_some() {
        query.window = Some(TimeRange {
            start: args.since.as_deref().map(Timestamp::parse).transpose()?,
            end: args.until.as_deref().map(Timestamp::parse).transpose()?,
        });
    }
    if let Some(filter) = args.filter {
        query.filter = Some(Filter::parse_str(&filter)?);
    }
    query.candidates = args.candidates.unwrap_or(0);
    query.weights = RecallWeights { text: args.text_weight, vector: args.vector_weight };
    let handle = open_tenant(engine, &args.tenant).await?;
    let mut hits = handle.recall(&query).await?;
    if !args.embeddings {
        for hit in &mut hits {
            hit.resource.embedding = None;
        }
    }
    let rank = |rank: Option<usize>| rank.map_or_else(|| "-".to_owned(), |r| r.to_string());
    match output {
        Output::Json => print_json(&hits),
        Output::Table => print_table(
            &["score", "text", "vector", "id", "content"],
            &hits
                .iter()
                .map(|h| {
                    vec![
                        format!("{:.5}", h.score),
                        rank(h.ranks.text),
                        rank(h.ranks.vector),
                        h.resource.id.to_string(),
                        h.resource.content.clone(),
                    ]
                })
                .collect::<Vec<_>>(),
        ),
    }
}
