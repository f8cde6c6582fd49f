//! The portable format on RocksDB: exports are canonical, imports verify before they write and
//! are idempotent.

mod portable_fixture;

use std::path::{Path, PathBuf};

use percolate::portable::{self, Progress};
use percolate::rocks::{RocksConfig, RocksProvider};
use percolate::{Error, MemoryEngine, NewResource, TenantConfig, TenantId};
use portable_fixture::{answers, fill};
use sha2::{Digest, Sha256};

fn engine(dir: &Path) -> MemoryEngine<RocksProvider> {
    MemoryEngine::new(RocksProvider::open(RocksConfig::new(dir)).expect("open store"))
}

fn acme() -> TenantId {
    TenantId::new("acme").expect("tenant id")
}

fn quiet(_: Progress) {}

async fn export_bytes(engine: &MemoryEngine<RocksProvider>, tenant: &TenantId) -> Vec<u8> {
    let handle = engine.tenant(tenant).await.expect("tenant");
    let mut out = Vec::new();
    portable::export(&handle, &mut out, quiet).await.expect("export");
    out
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write file");
    path
}

/// Replaces the trailer so the checksum matches the (edited) lines before it.
fn reseal(bytes: &[u8]) -> Vec<u8> {
    let text = std::str::from_utf8(bytes).expect("utf-8");
    let mut lines: Vec<&str> = text.lines().collect();
    lines.pop();
    let mut body = String::new();
    for line in &lines {
        body.push_str(line);
        body.push('\n');
    }
    let digest: String =
        Sha256::digest(body.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    format!("{body}{{\"records\":{},\"sha256\":\"{digest}\"}}\n", lines.len() - 1).into_bytes()
}

struct Source {
    _dir: tempfile::TempDir,
    engine: MemoryEngine<RocksProvider>,
    bytes: Vec<u8>,
    answers: Vec<String>,
}

async fn source(resources: usize) -> Source {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = engine(dir.path());
    let handle = engine.create_tenant(&acme(), TenantConfig::default()).await.expect("create");
    let fixture = fill(&handle, resources).await.expect("fill");
    let answers = answers(&handle, &fixture).await.expect("answers");
    drop(handle);
    let bytes = export_bytes(&engine, &acme()).await;
    Source { _dir: dir, engine, bytes, answers }
}

#[tokio::test(flavor = "multi_thread")]
async fn export_import_export_is_byte_identical() {
    let source = source(40).await;
    let work = tempfile::tempdir().expect("temp dir");
    let file = write(work.path(), "acme.jsonl", &source.bytes);
    let target = engine(&work.path().join("db"));
    let summary = portable::import(&target, &file, None, quiet).await.expect("import");
    assert!(summary.created_tenant);
    assert_eq!(summary.inserted, summary.header.counts);
    assert_eq!(summary.skipped.total(), 0);
    let again = export_bytes(&target, &acme()).await;
    assert_eq!(String::from_utf8_lossy(&again), String::from_utf8_lossy(&source.bytes));

    let handle = target.tenant(&acme()).await.expect("tenant");
    let config = handle.config().await.expect("config");
    assert_eq!(config.dimension, Some(portable_fixture::DIMENSION as u32));
    let fixture = portable_fixture::Fixture { entities: source_entities(&source.bytes) };
    assert_eq!(answers(&handle, &fixture).await.expect("answers"), source.answers);
}

/// The entity ids of an export, in file order, without the one the fixture deleted (it is not
/// in the file).
fn source_entities(bytes: &[u8]) -> Vec<percolate::EntityId> {
    std::str::from_utf8(bytes)
        .expect("utf-8")
        .lines()
        .filter_map(|line| serde_json::from_str::<percolate::Record>(line).ok())
        .filter_map(|record| match record {
            percolate::Record::Entity(e) => Some(e),
            _ => None,
        })
        .map(|e| (e.name.trim_start_matches("Entity ").parse::<u32>().unwrap_or(u32::MAX), e.id))
        .collect::<std::collections::BTreeMap<_, _>>()
        .into_values()
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn export_is_canonical_and_sealed() {
    let source = source(40).await;
    let text = String::from_utf8(source.bytes.clone()).expect("utf-8");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with(r#"{"format":"percolate-export","version":1,"tenant":"acme","#));
    assert!(lines[1].starts_with(r#"{"type":"resource","#));
    // Kinds in order, ids increasing within a kind.
    let kinds: Vec<&str> =
        lines[1..lines.len() - 1].iter().map(|l| l.split('"').nth(3).expect("type")).collect();
    let mut sorted = kinds.clone();
    let rank = |k: &str| ["resource", "entity", "edge", "moment"].iter().position(|x| *x == k);
    sorted.sort_by_key(|k| rank(k));
    assert_eq!(kinds, sorted);
    // Metadata keys come sorted whatever order they were written in.
    assert!(lines[1].contains(r#""metadata":{"alpha":{"a":[1,2.5,"x",null],"b":true},"lang":"#));
    // A second export of the same tenant is the same bytes.
    assert_eq!(export_bytes(&source.engine, &acme()).await, source.bytes);
    // The trailer seals every byte before it.
    assert_eq!(reseal(&source.bytes), source.bytes);
}

#[tokio::test(flavor = "multi_thread")]
async fn export_streams_across_many_pages() {
    // More resources than one scan page holds: pages must join without gaps or repeats.
    let source = source(portable::PAGE * 2 + 345).await;
    let records = String::from_utf8_lossy(&source.bytes).lines().count() - 2;
    let work = tempfile::tempdir().expect("temp dir");
    let header = portable::verify(&write(work.path(), "x.jsonl", &source.bytes)).expect("verify");
    assert_eq!(header.counts.resources, (portable::PAGE * 2 + 345) as u64);
    assert_eq!(header.counts.total(), records as u64);
    let target = engine(&work.path().join("db"));
    portable::import(&target, &work.path().join("x.jsonl"), None, quiet).await.expect("import");
    assert_eq!(export_bytes(&target, &acme()).await, source.bytes);
}

async fn assert_imports_nothing(bytes: &[u8], expect_in_message: &str) {
    let work = tempfile::tempdir().expect("temp dir");
    let file = write(work.path(), "bad.jsonl", bytes);
    let target = engine(&work.path().join("db"));
    let error = portable::import(&target, &file, None, quiet).await.expect_err("must fail");
    let message = error.to_string();
    assert!(matches!(error, Error::Invalid { .. }), "{message}");
    assert!(message.contains(expect_in_message), "{message:?} lacks {expect_in_message:?}");
    assert!(message.contains("line "), "{message}");
    assert!(target.list_tenants().await.expect("list").is_empty(), "tenant created by {message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn truncated_files_import_nothing() {
    let source = source(40).await;
    let bytes = &source.bytes;
    let lines: Vec<usize> =
        bytes.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1).collect();
    // Cut mid-record, at a record boundary (no trailer), and inside the trailer's last byte.
    assert_imports_nothing(&bytes[..lines[5] + 17], "truncated").await;
    assert_imports_nothing(&bytes[..lines[lines.len() - 2]], "truncated").await;
    assert_imports_nothing(&bytes[..bytes.len() - 1], "truncated").await;
    assert_imports_nothing(&bytes[..lines[0]], "truncated").await;
    assert_imports_nothing(&bytes[..10], "line 1").await;
    assert_imports_nothing(b"", "empty").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_files_import_nothing() {
    let source = source(40).await;
    let text = String::from_utf8(source.bytes.clone()).expect("utf-8");
    // One changed character in a record: still valid JSON, but the checksum no longer matches.
    let tampered = text.replacen("resource 3:", "resource 8:", 1);
    assert_ne!(tampered, text);
    assert_imports_nothing(tampered.as_bytes(), "checksum mismatch").await;
    // One flipped digit of an embedding.
    let index = text.find("\"embedding\":[").expect("embedding") + 14;
    let mut flipped = source.bytes.clone();
    flipped[index] = if flipped[index] == b'1' { b'2' } else { b'1' };
    assert_imports_nothing(&flipped, "").await;
    // A line appended after the trailer makes the trailer a record and the tail not a trailer.
    let mut appended = source.bytes.clone();
    appended.extend_from_slice(b"{\"records\":0}\n");
    assert_imports_nothing(&appended, "").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_records_with_a_valid_checksum_import_nothing() {
    let source = source(40).await;
    let text = String::from_utf8(source.bytes.clone()).expect("utf-8");
    let lines: Vec<&str> = text.lines().collect();
    let edge_line = lines.iter().position(|l| l.starts_with(r#"{"type":"edge""#)).expect("edge");
    let entity_line =
        lines.iter().position(|l| l.starts_with(r#"{"type":"entity""#)).expect("entity");

    // An edge whose entity is not in the file.
    let mut no_entity = lines.clone();
    no_entity.remove(entity_line);
    let mut edited = no_entity.join("\n");
    let header: serde_json::Value = serde_json::from_str(lines[0]).expect("header");
    let entities = header["counts"]["entities"].as_u64().expect("count");
    edited = edited.replacen(
        &format!(r#""entities":{entities}"#),
        &format!(r#""entities":{}"#, entities - 1),
        1,
    );
    edited.push('\n');
    assert_imports_nothing(&reseal(edited.as_bytes()), "is not in the file").await;

    // A moment that ends before it starts, reported at its line (1-based).
    let moment_line =
        lines.iter().position(|l| l.starts_with(r#"{"type":"moment""#)).expect("moment");
    let mut bad_moment: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    let moment: serde_json::Value = serde_json::from_str(lines[moment_line]).expect("moment");
    let start = moment["start"].as_str().expect("start");
    bad_moment[moment_line] = lines[moment_line].replacen(
        &format!(r#""start":"{start}""#),
        r#""start":"2999-01-01T00:00:00Z""#,
        1,
    );
    let joined = bad_moment.join("\n") + "\n";
    assert_imports_nothing(&reseal(joined.as_bytes()), &format!("line {}:", moment_line + 1)).await;

    // Records out of order (a resource after the entities).
    let mut reordered: Vec<&str> = lines.clone();
    let resource = reordered.remove(1);
    reordered.insert(edge_line - 1, resource);
    let joined = reordered.join("\n") + "\n";
    assert_imports_nothing(&reseal(joined.as_bytes()), "ordered by kind").await;

    // A duplicate record.
    let mut duplicated: Vec<&str> = lines.clone();
    duplicated.insert(2, lines[1]);
    let joined = duplicated.join("\n") + "\n";
    assert_imports_nothing(&reseal(joined.as_bytes()), "duplicate").await;

    // An embedding of the wrong dimension.
    let wrong = text.replacen("\"embedding\":[", "\"embedding\":[0.5,", 1);
    assert_imports_nothing(&reseal(wrong.as_bytes()), "dimension").await;

    // A newer format version.
    let newer = text.replacen("\"version\":1", "\"version\":2", 1);
    assert_imports_nothing(&reseal(newer.as_bytes()), "format version 2").await;

    // Text with NUL, which no provider stores (the engine refuses it): refused up front.
    let entity: serde_json::Value = serde_json::from_str(lines[entity_line]).expect("entity");
    let name = entity["name"].as_str().expect("name");
    let mut nul: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    nul[entity_line] = lines[entity_line].replacen(
        &format!(r#""name":"{name}""#),
        &format!(r#""name":"{name}\u0000""#),
        1,
    );
    let joined = nul.join("\n") + "\n";
    assert_imports_nothing(&reseal(joined.as_bytes()), "NUL").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rerunning_an_interrupted_import_completes_it_without_duplicates() {
    let source = source(1200).await;
    let work = tempfile::tempdir().expect("temp dir");
    let file = write(work.path(), "acme.jsonl", &source.bytes);
    let target = engine(&work.path().join("db"));
    let first = portable::import(&target, &file, None, quiet).await.expect("first import");
    // Simulate an interruption: remove a sample of every kind, as if they were never written.
    let handle = target.tenant(&acme()).await.expect("tenant");
    let text = String::from_utf8(source.bytes.clone()).expect("utf-8");
    let mut removed = portable::Counts::default();
    for (n, line) in text.lines().enumerate().skip(1) {
        let Ok(record) = serde_json::from_str::<percolate::Record>(line) else { continue };
        if n % 5 != 0 {
            continue;
        }
        match record {
            percolate::Record::Resource(r) => {
                handle.delete_resource(r.id).await.expect("delete");
                removed.resources += 1;
            }
            percolate::Record::Edge(e) => {
                handle.delete_edge(e.id).await.expect("delete");
                removed.edges += 1;
            }
            percolate::Record::Moment(m) => {
                handle.delete_moment(m.id).await.expect("delete");
                removed.moments += 1;
            }
            percolate::Record::Entity(_) => {}
        }
    }
    assert!(removed.resources > 100 && removed.edges > 0 && removed.moments > 0);
    drop(handle);
    let second = portable::import(&target, &file, None, quiet).await.expect("second import");
    assert!(!second.created_tenant);
    assert_eq!(second.inserted, removed);
    assert_eq!(second.inserted.total() + second.skipped.total(), first.inserted.total());
    assert_eq!(export_bytes(&target, &acme()).await, source.bytes);
    let third = portable::import(&target, &file, None, quiet).await.expect("third import");
    assert_eq!(third.inserted.total(), 0);
    assert_eq!(third.skipped, first.inserted);
    assert_eq!(export_bytes(&target, &acme()).await, source.bytes);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_different_record_under_an_existing_id_is_an_error() {
    let source = source(40).await;
    let work = tempfile::tempdir().expect("temp dir");
    let file = write(work.path(), "acme.jsonl", &source.bytes);
    let target = engine(&work.path().join("db"));
    portable::import(&target, &file, None, quiet).await.expect("import");
    let handle = target.tenant(&acme()).await.expect("tenant");
    let page = handle.scan(percolate::RecordKind::Entity, None, 1).await.expect("scan");
    let Some(percolate::Record::Entity(mut entity)) = page.into_iter().next() else {
        panic!("no entity")
    };
    entity.name = "Renamed".into();
    handle.update_entity(entity).await.expect("update");
    let error = portable::import(&target, &file, None, quiet).await.expect_err("conflict");
    assert!(matches!(error, Error::AlreadyExists { .. }), "{error}");
    assert!(error.to_string().contains("line "), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn import_into_an_incompatible_tenant_is_refused() {
    let source = source(40).await;
    let work = tempfile::tempdir().expect("temp dir");
    let file = write(work.path(), "acme.jsonl", &source.bytes);
    let target = engine(&work.path().join("db"));
    let other = TenantConfig { dimension: Some(3), ..TenantConfig::default() };
    let handle = target.create_tenant(&acme(), other).await.expect("create");
    handle
        .create_resource(NewResource::new("x").with_embedding(vec![1.0, 0.0, 0.0]))
        .await
        .expect("put");
    drop(handle);
    let error = portable::import(&target, &file, None, quiet).await.expect_err("dimension");
    assert!(error.to_string().contains("dimension"), "{error}");
    // Importing under another name works.
    let copy = TenantId::new("copy").expect("id");
    let summary = portable::import(&target, &file, Some(&copy), quiet).await.expect("import");
    assert_eq!(summary.tenant, copy);
}
