//! The record commands (put, get, delete, search, traverse, moments, tenant) on an opened
//! engine, and reading their JSON input. Owns no output format and no provider choice.

#[allow(unused_imports)]
use super::*;

/// Runs every command but `demo` and `migrate` on one provider.
pub(crate) async fn run<P: Provider>(
    engine: &MemoryEngine<P>,
    command: Command,
    output: Output,
) -> percolate::Result<()> {
    match command {
        Command::Demo { .. }
        | Command::Migrate { .. }
        | Command::Bench(_)
        | Command::RotateKey { .. } => {
            Err(bad("command", "demo, bench and migrate do not run on the configured provider"))
        }
        Command::Tenant { command } => tenant_command(engine, command, output).await,
        Command::Put { kind, tenant, input } => {
            let handle = open_tenant(engine, &tenant).await?;
            let text = match input {
                Some(path) => read_file(&path)?,
                None => read_stdin()?,
            };
            put(&handle, kind, &text, output).await
        }
        Command::Get { kind, tenant, id } => {
            let handle = open_tenant(engine, &tenant).await?;
            let record = match kind {
                Kind::Resource => Record::Resource(handle.get_resource(id.parse()?).await?),
                Kind::Entity => Record::Entity(handle.get_entity(id.parse()?).await?),
                Kind::Edge => Record::Edge(handle.get_edge(id.parse()?).await?),
                Kind::Moment => Record::Moment(handle.get_moment(id.parse()?).await?),
            };
            print_records(kind, &[record], false, output)
        }
        Command::Delete { kind, tenant, id } => {
            let handle = open_tenant(engine, &tenant).await?;
            match kind {
                Kind::Resource => handle.delete_resource(id.parse::<ResourceId>()?).await?,
                Kind::Entity => handle.delete_entity(id.parse::<EntityId>()?).await?,
                Kind::Edge => handle.delete_edge(id.parse::<EdgeId>()?).await?,
                Kind::Moment => handle.delete_moment(id.parse::<MomentId>()?).await?,
            }
            let kind_name = kind_name(kind);
            match output {
                Output::Json => print_json(&serde_json::json!({ "deleted": kind_name, "id": id })),
                Output::Table => print_table(&["deleted", "id"], &[vec![kind_name.into(), id]]),
            }
        }
        Command::Search { tenant, vector, vector_file, k, filter, embeddings } => {
            let text = match (vector, vector_file) {
                (Some(text), _) => text,
                (None, Some(path)) => read_file(&path)?,
                (None, None) => return Err(bad("vector", "give --vector or --vector-file")),
            };
            let vector: Vec<f32> = serde_json::from_str(&text)
                .map_err(|e| bad("vector", format!("not a JSON array of numbers: {e}")))?;
            let mut query = SearchQuery::new(vector, k);
            if let Some(filter) = filter {
                query = query.with_filter(Filter::parse_str(&filter)?);
            }
            let handle = open_tenant(engine, &tenant).await?;
            let mut hits = handle.search_resources(&query).await?;
            if !embeddings {
                for hit in &mut hits {
                    hit.resource.embedding = None;
                }
            }
            match output {
                Output::Json => print_json(&hits),
                Output::Table => print_table(
                    &["distance", "id", "content", "metadata"],
                    &hits
                        .iter()
                        .map(|h| {
                            vec![
                                format!("{:.4}", h.distance),
                                h.resource.id.to_string(),
                                h.resource.content.clone(),
                                Value::Object(h.resource.metadata.clone()).to_string(),
                            ]
                        })
                        .collect::<Vec<_>>(),
                ),
            }
        }
        Command::Recall(args) => recall::run(engine, args, output).await,
        Command::Traverse { tenant, entity, depth, direction, relations } => {
            let start: EntityId = entity.parse()?;
            let direction: Direction = direction.parse()?;
            let handle = open_tenant(engine, &tenant).await?;
            let query = TraverseQuery::new(start, depth)
                .with_direction(direction)
                .with_relations(relations);
            let reached = handle.traverse(&query).await?;
            match output {
                Output::Json => print_json(&reached),
                Output::Table => {
                    let mut rows = Vec::with_capacity(reached.len());
                    for r in &reached {
                        let entity = handle.get_entity(r.entity).await?;
                        rows.push(vec![
                            r.depth.to_string(),
                            r.entity.to_string(),
                            entity.name,
                            entity.kind,
                        ]);
                    }
                    print_table(&["depth", "id", "name", "kind"], &rows)
                }
            }
        }
        Command::Moments { tenant, from, to } => {
            let range = TimeRange {
                start: from.as_deref().map(Timestamp::parse).transpose()?,
                end: to.as_deref().map(Timestamp::parse).transpose()?,
            };
            let handle = open_tenant(engine, &tenant).await?;
            let moments = handle.moments_in_range(&range).await?;
            let records: Vec<Record> = moments.into_iter().map(Record::Moment).collect();
            print_records(Kind::Moment, &records, true, output)
        }
        Command::Export { tenant, out } => {
            let handle = open_tenant(engine, &tenant).await?;
            export(&handle, out.as_deref(), output).await
        }
        Command::Import { tenant, input, check } => {
            let tenant = tenant.map(TenantId::new).transpose()?;
            // Import reads its input twice (verify, then write): stdin goes to a file first.
            let spooled;
            let path = match input {
                Some(path) => path,
                None => {
                    spooled = spool_stdin()?;
                    spooled.path().to_owned()
                }
            };
            if check {
                let header =
                    tokio::task::spawn_blocking(move || portable::verify(&path)).await.map_err(
                        |e| Error::Backend { provider: "verify", source: Box::new(e) },
                    )??;
                return print_summary(
                    &serde_json::json!({ "valid": true, "header": header }),
                    output,
                );
            }
            import(engine, &path, tenant.as_ref(), output).await
        }
    }
}

pub(crate) fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Resource => "resource",
        Kind::Entity => "entity",
        Kind::Edge => "edge",
        Kind::Moment => "moment",
    }
}

pub(crate) async fn open_tenant<P: Provider>(
    engine: &MemoryEngine<P>,
    tenant: &str,
) -> percolate::Result<TenantHandle<P>> {
    engine.tenant(&TenantId::new(tenant)?).await
}

pub(crate) async fn tenant_command<P: Provider>(
    engine: &MemoryEngine<P>,
    command: TenantCommand,
    output: Output,
) -> percolate::Result<()> {
    match command {
        TenantCommand::Create { tenant, dimension, metric } => {
            let id = TenantId::new(tenant)?;
            let config = TenantConfig { dimension, metric: metric.parse::<Metric>()? };
            let handle = engine.create_tenant(&id, config).await?;
            let config = handle.config().await?;
            let summary = serde_json::json!({
                "tenant": id,
                "dimension": config.dimension,
                "metric": config.metric,
            });
            print_summary(&summary, output)
        }
        TenantCommand::List => {
            let tenants = engine.list_tenants().await?;
            match output {
                Output::Json => print_json(&tenants),
                Output::Table => print_table(
                    &["tenant"],
                    &tenants.iter().map(|t| vec![t.to_string()]).collect::<Vec<_>>(),
                ),
            }
        }
        TenantCommand::Delete { tenant } => {
            let id = TenantId::new(tenant)?;
            engine.delete_tenant(&id).await?;
            print_summary(&serde_json::json!({ "deleted": "tenant", "id": id }), output)
        }
    }
}

pub(crate) fn read_file(path: &Path) -> percolate::Result<String> {
    std::fs::read_to_string(path).map_err(|e| bad("input file", format!("{}: {e}", path.display())))
}

pub(crate) fn read_stdin() -> percolate::Result<String> {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text).map_err(|e| bad("stdin", e))?;
    Ok(text)
}

pub(crate) fn spool_stdin() -> percolate::Result<tempfile::NamedTempFile> {
    let mut file = tempfile::NamedTempFile::new().map_err(|e| Error::io("temporary file", e))?;
    std::io::copy(&mut std::io::stdin().lock(), &mut file)
        .map_err(|e| Error::io("temporary file", e))?;
    Ok(file)
}

/// The fields `put` accepts for each kind: a typo must not vanish silently, and ids and
/// timestamps are assigned (records with their ids go through `import`).
pub(crate) fn allowed_fields(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Resource => &["uri", "content", "metadata", "embedding"],
        Kind::Entity => &["name", "kind", "properties"],
        Kind::Edge => &["from", "to", "relation", "weight", "properties"],
        Kind::Moment => &["start", "end", "kind", "content", "entities", "metadata"],
    }
}

pub(crate) fn parse_new<T: serde::de::DeserializeOwned>(
    kind: Kind,
    index: Option<usize>,
    value: Value,
) -> percolate::Result<T> {
    let at = index.map(|i| format!(" (at index {i})")).unwrap_or_default();
    let Value::Object(map) = &value else {
        return Err(bad("input", format!("expected a JSON object{at}")));
    };
    let allowed = allowed_fields(kind);
    if let Some(key) = map.keys().find(|key| !allowed.contains(&key.as_str())) {
        let hint = if key == "id" {
            " (put assigns ids; use import to store records with their ids)".to_owned()
        } else {
            format!(" (a {} has {})", kind_name(kind), allowed.join(", "))
        };
        return Err(bad("input", format!("unknown field {key:?}{at}{hint}")));
    }
    serde_json::from_value(value).map_err(|e| bad("input", format!("{e}{at}")))
}

/// Parses every record of a `put`; `many` says whether they came as an array (errors then
/// name the index).
pub(crate) fn parse_all<T: serde::de::DeserializeOwned>(
    kind: Kind,
    many: bool,
    values: Vec<Value>,
) -> percolate::Result<Vec<T>> {
    values.into_iter().enumerate().map(|(i, v)| parse_new(kind, many.then_some(i), v)).collect()
}

/// Creates the records in `text` (an object or an array, the array atomically).
pub(crate) async fn put<P: Provider>(
    handle: &TenantHandle<P>,
    kind: Kind,
    text: &str,
    output: Output,
) -> percolate::Result<()> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| bad("input", format!("not JSON: {e}")))?;
    let (many, values) = match value {
        Value::Array(values) if values.is_empty() => {
            return Err(bad("input", "an empty array"));
        }
        Value::Array(values) => (true, values),
        other => (false, vec![other]),
    };
    // Every record is parsed and checked before anything is written.
    let records: Vec<Record> = match kind {
        Kind::Resource => {
            let new: Vec<NewResource> = parse_all(kind, many, values)?;
            let stored = if many {
                handle.batch_create_resources(new).await?
            } else {
                let mut stored = Vec::with_capacity(1);
                for new in new {
                    stored.push(handle.create_resource(new).await?);
                }
                stored
            };
            stored.into_iter().map(Record::Resource).collect()
        }
        // An array of entities, edges or moments is one batch call: one atomic write.
        Kind::Entity => {
            let new: Vec<NewEntity> = parse_all(kind, many, values)?;
            handle.batch_create_entities(new).await?.into_iter().map(Record::Entity).collect()
        }
        Kind::Edge => {
            let new: Vec<NewEdge> = parse_all(kind, many, values)?;
            handle.batch_create_edges(new).await?.into_iter().map(Record::Edge).collect()
        }
        Kind::Moment => {
            let new: Vec<NewMoment> = parse_all(kind, many, values)?;
            handle.batch_create_moments(new).await?.into_iter().map(Record::Moment).collect()
        }
    };
    print_records(kind, &records, many, output)
}
