//! Encryption at rest on the RocksDB provider: no plaintext in any file, wrong and missing keys
//! are clear errors, rotation re-wraps keys without touching data, deleting shreds the key, and
//! damaged or moved bytes — values, the index snapshot, RocksDB's own files — are errors, never
//! garbage and never a panic.

// Helpers here are test code too: a failed setup step should stop the test where it happened.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use percolate::rocks::{MasterKey, RocksConfig, RocksProvider};
use percolate::{
    EntityQuery, Error, MemoryEngine, NewEdge, NewEntity, NewMoment, NewResource, Resource,
    ResourceId, SearchQuery, TenantConfig, TenantId, TextQuery, Timestamp,
};

const KEY: [u8; 32] = [0x42; 32];
const DIMENSION: usize = 16;
const CONTENT_CANARY: &str = "CANARYCONTENTq7Jx";
const METADATA_CANARY: &str = "canarymetadataw3Z";
const NAME_CANARY: &str = "Canarynamezebra";
const RELATION_CANARY: &str = "canary_relation_k9";
const MOMENT_CANARY: &str = "CANARYMOMENTv2Pq";
const KIND_CANARY: &str = "canarykindr5";

fn config(dir: &Path, key: Option<MasterKey>) -> RocksConfig {
    let mut config = RocksConfig::new(dir);
    config.master_key = key;
    // Small memtables, so the data reaches SST files and not only the write-ahead log.
    config.write_buffer_bytes = 64 << 10;
    config.exact_search_below = 0;
    config
}

fn engine(dir: &Path, key: Option<MasterKey>) -> percolate::Result<MemoryEngine<RocksProvider>> {
    Ok(MemoryEngine::new(RocksProvider::open(config(dir, key))?))
}

fn raw_key() -> Option<MasterKey> {
    Some(MasterKey::from_bytes(KEY))
}

fn tenant_id() -> TenantId {
    TenantId::new("vault").unwrap()
}

/// The embedding whose raw bytes must not appear on disk: distinctive, non-repeating values.
fn canary_embedding(seed: usize) -> Vec<f32> {
    percolate::bench::dataset::Dataset::synthetic(1, 0, DIMENSION, 0, seed as u64 + 1)
        .row(0)
        .to_vec()
}

fn embedding_bytes(embedding: &[f32]) -> Vec<u8> {
    embedding.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Writes every kind of record with canaries in all its text fields; returns the resources.
async fn fill(engine: &MemoryEngine<RocksProvider>, resources: usize) -> Vec<Resource> {
    let tenant = engine.create_tenant(&tenant_id(), TenantConfig::default()).await.unwrap();
    let mut written = Vec::new();
    for i in 0..resources {
        let mut metadata = percolate::Metadata::new();
        metadata.insert("secret".into(), format!("{METADATA_CANARY}{i}").into());
        metadata.insert("group".into(), (i % 4).into());
        let resource = tenant
            .create_resource(
                NewResource::new(format!("{CONTENT_CANARY} number {i} {}", "padding ".repeat(40)))
                    .with_metadata(metadata)
                    .with_embedding(canary_embedding(i)),
            )
            .await
            .unwrap();
        written.push(resource);
    }
    let a = tenant.create_entity(NewEntity::new(NAME_CANARY, KIND_CANARY)).await.unwrap();
    let b = tenant.create_entity(NewEntity::new("plain other", KIND_CANARY)).await.unwrap();
    tenant.create_edge(NewEdge::new(a.id, b.id, RELATION_CANARY)).await.unwrap();
    let mut moment =
        NewMoment::new(Timestamp::from_micros(10), Timestamp::from_micros(20), KIND_CANARY);
    moment.content = MOMENT_CANARY.into();
    tenant.create_moment(moment).await.unwrap();
    // A text search indexes the pending records' content: after it the postings, with their
    // terms or keyed tokens, are on disk for the search below to look at.
    let hits = tenant.text_search(&TextQuery::new(CONTENT_CANARY, 1)).await.unwrap();
    assert_eq!(hits.len(), 1);
    RocksProvider::wait_for_index(tenant.provider_tenant());
    RocksProvider::write_snapshot(tenant.provider_tenant()).unwrap();
    written
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every canary found in any file under `dir`, with the file.
fn canaries_on_disk(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut needles: Vec<(String, Vec<u8>)> = [
        CONTENT_CANARY,
        METADATA_CANARY,
        &NAME_CANARY.to_lowercase(),
        NAME_CANARY,
        RELATION_CANARY,
        MOMENT_CANARY,
        KIND_CANARY,
    ]
    .iter()
    .map(|s| (s.to_string(), s.as_bytes().to_vec()))
    .collect();
    // A name prefix as the plaintext name index would hold it.
    needles.push(("name prefix".into(), b"canaryn".to_vec()));
    // Content terms as the plaintext text index holds them: lowercased and stemmed.
    for canary in [CONTENT_CANARY, MOMENT_CANARY] {
        for term in percolate::text::query_terms(canary) {
            needles.push((format!("text term {term}"), term.into_bytes()));
        }
    }
    for seed in [0, 1, 7] {
        needles.push((
            format!("embedding {seed}"),
            embedding_bytes(&canary_embedding(seed))[..16].to_vec(),
        ));
    }
    let mut found = Vec::new();
    for file in files_under(dir) {
        let bytes = std::fs::read(&file).unwrap();
        for (name, needle) in &needles {
            if contains(&bytes, needle) {
                found.push((name.clone(), file.clone()));
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_plaintext_canary_is_in_any_file_of_an_encrypted_tenant() {
    // The same workload in plaintext proves the search finds canaries when they are there.
    let plain = tempfile::tempdir().unwrap();
    drop(fill(&engine(plain.path(), None).unwrap(), 400).await);
    let found = canaries_on_disk(&plain.path().join("vault"));
    for canary in [CONTENT_CANARY, METADATA_CANARY, RELATION_CANARY, MOMENT_CANARY] {
        assert!(found.iter().any(|(name, _)| name == canary), "plaintext control lacks {canary}");
    }
    for canary in [CONTENT_CANARY, MOMENT_CANARY] {
        let term = format!("text term {}", percolate::text::query_terms(canary)[0]);
        assert!(found.iter().any(|(name, _)| *name == term), "plaintext control lacks {term}");
    }

    let sealed = tempfile::tempdir().unwrap();
    let engine = engine(sealed.path(), raw_key()).unwrap();
    fill(&engine, 400).await;
    drop(engine);
    let dir = sealed.path().join("vault");
    let files = files_under(&dir);
    let names: Vec<String> =
        files.iter().map(|f| f.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert!(names.iter().any(|n| n.ends_with(".sst")), "no SST file was written: {names:?}");
    assert!(names.iter().any(|n| n.ends_with(".log")), "no WAL file: {names:?}");
    assert!(names.iter().any(|n| n.starts_with("MANIFEST")), "no MANIFEST: {names:?}");
    assert!(names.iter().any(|n| n == "vectors.hnsw"), "no index snapshot: {names:?}");
    let found = canaries_on_disk(&dir);
    assert!(found.is_empty(), "plaintext on disk: {found:?}");
    let found = canaries_on_disk(sealed.path());
    assert!(found.is_empty(), "plaintext on disk: {found:?}");

    // And everything still reads back, searches and traverses.
    let engine = self::engine(sealed.path(), raw_key()).unwrap();
    let tenant = engine.tenant(&tenant_id()).await.unwrap();
    assert!(RocksProvider::is_encrypted(tenant.provider_tenant()));
    let hits = tenant.search_resources(&SearchQuery::new(canary_embedding(7), 1)).await.unwrap();
    assert!(hits[0].resource.content.starts_with(&format!("{CONTENT_CANARY} number 7 ")));
    let text =
        tenant.text_search(&TextQuery::new(CONTENT_CANARY.to_lowercase(), 500)).await.unwrap();
    assert_eq!(text.len(), 400, "every resource found by its content term");
    let moments = tenant.text_search(&TextQuery::new(MOMENT_CANARY, 5).moments()).await.unwrap();
    assert_eq!(moments.len(), 1, "the moment found by its content term");
    let entities = tenant.search_entities(&EntityQuery::new("canaryna")).await.unwrap();
    assert_eq!(entities.len(), 1);
    assert_eq!(entities[0].name, NAME_CANARY);
    assert!(tenant.search_entities(&EntityQuery::new("canaryx")).await.unwrap().is_empty());
    let edges = tenant
        .get_edges(entities[0].id, percolate::Direction::Out, Some(RELATION_CANARY))
        .await
        .unwrap();
    assert_eq!(edges.len(), 1);
    assert_eq!(edges[0].relation, RELATION_CANARY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_missing_master_key_is_a_crypto_error() {
    let dir = tempfile::tempdir().unwrap();
    fill(&engine(dir.path(), raw_key()).unwrap(), 3).await;
    let wrong = engine(dir.path(), Some(MasterKey::from_bytes([0x43; 32]))).unwrap();
    match wrong.tenant(&tenant_id()).await {
        Err(Error::Crypto(message)) => {
            assert!(message.contains("different master key"), "{message}")
        }
        other => panic!("expected a crypto error, got {:?}", other.map(|_| ())),
    }
    let missing = engine(dir.path(), None).unwrap();
    match missing.tenant(&tenant_id()).await {
        Err(Error::Crypto(message)) => assert!(message.contains("no master key"), "{message}"),
        other => panic!("expected a crypto error, got {:?}", other.map(|_| ())),
    }
    // A damaged key file is a crypto error too.
    let key_file = dir.path().join("vault").join("percolate.key");
    let mut bytes = std::fs::read(&key_file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&key_file, &bytes).unwrap();
    let right = engine(dir.path(), raw_key()).unwrap();
    assert!(matches!(right.tenant(&tenant_id()).await, Err(Error::Crypto(_))));
}

/// With a master key configured, a tenant without a key file (made before the key, or whose
/// key file went missing) is not opened in plaintext unless the settings say so: its writes
/// would otherwise land in clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_without_a_key_file_is_refused_when_a_master_key_is_configured() {
    let dir = tempfile::tempdir().unwrap();
    let plain = engine(dir.path(), None).unwrap();
    let tenant = plain.create_tenant(&tenant_id(), TenantConfig::default()).await.unwrap();
    tenant.create_resource(NewResource::new("written before the key")).await.unwrap();
    drop((tenant, plain));
    let keyed = engine(dir.path(), raw_key()).unwrap();
    match keyed.tenant(&tenant_id()).await {
        Err(Error::Crypto(message)) => {
            assert!(message.contains("allow_plaintext_tenants"), "{message}")
        }
        other => panic!("expected a crypto error, got {:?}", other.map(|_| ())),
    }
    drop(keyed);
    let mut allowed = config(dir.path(), raw_key());
    allowed.allow_plaintext_tenants = true;
    let allowed = MemoryEngine::new(RocksProvider::open(allowed).unwrap());
    let tenant = allowed.tenant(&tenant_id()).await.unwrap();
    let page = tenant.scan(percolate::RecordKind::Resource, None, 10).await.unwrap();
    assert_eq!(page.len(), 1);
}

/// A tenant directory that is a symbolic link (planted to make a delete shred or remove files
/// elsewhere) is refused, and the files it points at are left alone.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlinked_tenant_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    fill(&engine(elsewhere.path(), raw_key()).unwrap(), 2).await;
    let target = elsewhere.path().join("vault");
    let key_file = std::fs::read(target.join("percolate.key")).unwrap();
    std::fs::create_dir_all(dir.path()).unwrap();
    std::os::unix::fs::symlink(&target, dir.path().join("vault")).unwrap();
    let engine = engine(dir.path(), raw_key()).unwrap();
    assert!(engine.list_tenants().await.unwrap().is_empty(), "a link is not a tenant");
    for result in [
        engine.tenant(&tenant_id()).await.map(|_| ()),
        engine.delete_tenant(&tenant_id()).await,
        engine.create_tenant(&tenant_id(), TenantConfig::default()).await.map(|_| ()),
    ] {
        match result {
            Err(Error::Invalid { what: "tenant directory", reason }) => {
                assert!(reason.contains("symbolic link"), "{reason}")
            }
            other => panic!("expected the link to be refused, got {other:?}"),
        }
    }
    assert_eq!(std::fs::read(target.join("percolate.key")).unwrap(), key_file);
}

fn data_files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    files_under(dir)
        .into_iter()
        .filter(|f| f.file_name().is_some_and(|n| n != "percolate.key"))
        .map(|f| {
            let bytes = std::fs::read(&f).unwrap();
            (f, bytes)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passphrase_key_rotates_to_a_new_key_without_rewriting_data() {
    let dir = tempfile::tempdir().unwrap();
    let old = MasterKey::from_text("correct horse battery staple").unwrap();
    let written = fill(&engine(dir.path(), Some(old.clone())).unwrap(), 5).await;
    let before = data_files(&dir.path().join("vault"));

    let new = MasterKey::from_bytes([0x99; 32]);
    let provider = RocksProvider::open(config(dir.path(), Some(old.clone()))).unwrap();
    assert_eq!(provider.rotate_master_key(&new).unwrap(), 1);
    // Running it again (as after an interruption) is harmless.
    assert_eq!(provider.rotate_master_key(&new).unwrap(), 1);
    drop(provider);
    assert_eq!(data_files(&dir.path().join("vault")), before, "rotation rewrote data files");

    let stale = engine(dir.path(), Some(old)).unwrap();
    assert!(matches!(stale.tenant(&tenant_id()).await, Err(Error::Crypto(_))));
    let rotated = engine(dir.path(), Some(new)).unwrap();
    let tenant = rotated.tenant(&tenant_id()).await.unwrap();
    assert_eq!(tenant.get_resource(written[2].id).await.unwrap(), written[2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_tenant_shreds_its_key_and_a_recreated_tenant_gets_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), raw_key()).unwrap();
    fill(&engine, 3).await;
    let key_file = dir.path().join("vault").join("percolate.key");
    let old_key = std::fs::read(&key_file).unwrap();
    // A deletion interrupted right after shredding leaves data nobody can read, and says so.
    drop(engine);
    let backup = tempfile::tempdir().unwrap();
    copy_dir(&dir.path().join("vault"), &backup.path().join("vault"));
    std::fs::remove_file(backup.path().join("vault").join("percolate.key")).unwrap();
    let shredded = self::engine(backup.path(), raw_key()).unwrap();
    match shredded.tenant(&tenant_id()).await {
        Err(Error::Crypto(message)) => assert!(message.contains("no key file"), "{message}"),
        other => panic!("expected a crypto error, got {:?}", other.map(|_| ())),
    }
    let engine = self::engine(dir.path(), raw_key()).unwrap();
    engine.delete_tenant(&tenant_id()).await.unwrap();
    assert!(!dir.path().join("vault").exists());
    engine.create_tenant(&tenant_id(), TenantConfig::default()).await.unwrap();
    assert_ne!(std::fs::read(&key_file).unwrap(), old_key);
}

/// Column families of a tenant database, as `cf.rs` names them.
const COLUMN_FAMILIES: [&str; 10] = [
    "meta",
    "resources",
    "embeddings",
    "entities",
    "entity_names",
    "edges",
    "adjacency",
    "moments",
    "moment_time",
    "text",
];

/// Opens a closed tenant's database directly, below percolate, as an attacker with the disk
/// would.
fn raw_db(dir: &Path) -> rocksdb::DB {
    rocksdb::DB::open_cf(&rocksdb::Options::default(), dir, COLUMN_FAMILIES).unwrap()
}

fn raw_value(db: &rocksdb::DB, cf: &str, key: &[u8]) -> Vec<u8> {
    db.get_cf(db.cf_handle(cf).unwrap(), key).unwrap().unwrap()
}

fn raw_put(db: &rocksdb::DB, cf: &str, key: &[u8], value: &[u8]) {
    db.put_cf(db.cf_handle(cf).unwrap(), key, value).unwrap();
}

fn is_corrupt<T: std::fmt::Debug>(result: percolate::Result<T>) -> bool {
    matches!(result, Err(Error::Corrupt { .. }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_truncated_or_moved_values_fail_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let written = fill(&engine(dir.path(), raw_key()).unwrap(), 6).await;
    let other = tempfile::tempdir().unwrap();
    let foreign = fill(&engine(other.path(), raw_key()).unwrap(), 1).await;
    let foreign_value = {
        let db = raw_db(&other.path().join("vault"));
        raw_value(&db, "resources", foreign[0].id.as_bytes())
    };
    {
        let db = raw_db(&dir.path().join("vault"));
        let id = |i: usize| written[i].id.as_bytes().to_vec();
        // 0: a flipped bit in the ciphertext; 1: a truncated value; 2: resource 3's value
        // under resource 2's key; 3: another tenant's value under a key of this one (the
        // same id, as a copied store would have); 4: an embedding flipped.
        let mut flipped = raw_value(&db, "resources", &id(0));
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0x01;
        raw_put(&db, "resources", &id(0), &flipped);
        let value = raw_value(&db, "resources", &id(1));
        raw_put(&db, "resources", &id(1), &value[..value.len() - 1]);
        let moved = raw_value(&db, "resources", &id(3));
        raw_put(&db, "resources", &id(2), &moved);
        raw_put(&db, "resources", foreign[0].id.as_bytes(), &foreign_value);
        let mut embedding = raw_value(&db, "embeddings", &id(4));
        embedding[30] ^= 0x80;
        raw_put(&db, "embeddings", &id(4), &embedding);
    }
    // The tenant opens: damaged records are errors when read, the rest stays reachable.
    let engine = engine(dir.path(), raw_key()).unwrap();
    let tenant = engine.tenant(&tenant_id()).await.unwrap();
    assert!(is_corrupt(tenant.get_resource(written[4].id).await), "damaged embedding");
    for (i, resource) in written.iter().enumerate().take(3) {
        assert!(is_corrupt(tenant.get_resource(resource.id).await), "resource {i}");
    }
    assert!(is_corrupt(tenant.get_resource(foreign[0].id).await));
    assert_eq!(tenant.get_resource(written[3].id).await.unwrap(), written[3]);
    assert_eq!(tenant.get_resource(written[5].id).await.unwrap(), written[5]);
}

/// Damages a copy of a closed tenant in many ways and checks each copy either fails to open
/// or serves exactly what was written (or errors): never other bytes, never a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_rocksdb_files_and_snapshots_give_errors_or_the_truth() {
    let original = tempfile::tempdir().unwrap();
    let written = fill(&engine(original.path(), raw_key()).unwrap(), 300).await;
    let by_id: BTreeMap<ResourceId, Resource> = written.iter().map(|r| (r.id, r.clone())).collect();
    let tenant_dir = original.path().join("vault");
    let files: Vec<PathBuf> = files_under(&tenant_dir)
        .into_iter()
        .filter(|f| f.file_name().is_some_and(|n| n != "LOCK" && n != "percolate.key"))
        .collect();
    let mut outcomes = BTreeMap::new();
    for file in &files {
        let length = std::fs::metadata(file).unwrap().len() as usize;
        if length == 0 {
            continue;
        }
        for damage in ["flip-start", "flip-middle", "flip-end", "truncate-half"] {
            let copy = tempfile::tempdir().unwrap();
            copy_dir(&tenant_dir, &copy.path().join("vault"));
            let target = copy.path().join("vault").join(file.file_name().unwrap());
            let mut bytes = std::fs::read(&target).unwrap();
            match damage {
                "flip-start" => bytes[0] ^= 0xff,
                "flip-middle" => bytes[length / 2] ^= 0x10,
                "flip-end" => bytes[length - 1] ^= 0x01,
                _ => bytes.truncate(length / 2),
            }
            std::fs::write(&target, &bytes).unwrap();
            let outcome = check_damaged(copy.path(), &by_id).await;
            outcomes.insert(
                format!("{} {damage}", file.file_name().unwrap().to_string_lossy()),
                outcome,
            );
        }
    }
    // Every damaged copy was checked; print what happened for the record.
    assert!(outcomes.len() >= 4 * 5, "too few files damaged: {outcomes:?}");
    for (case, outcome) in &outcomes {
        println!("{case}: {outcome}");
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
        }
    }
}

/// Opens a damaged store and reads everything; panics only when a read returns a record that
/// differs from what was written.
async fn check_damaged(root: &Path, written: &BTreeMap<ResourceId, Resource>) -> String {
    let engine = match engine(root, raw_key()) {
        Ok(engine) => engine,
        Err(e) => return format!("store refused: {e}"),
    };
    let tenant = match engine.tenant(&tenant_id()).await {
        Ok(tenant) => tenant,
        Err(e) => return format!("tenant refused: {e}"),
    };
    let (mut good, mut errors) = (0, 0);
    for (id, resource) in written {
        match tenant.get_resource(*id).await {
            Ok(read) => {
                assert_eq!(&read, resource, "a damaged store served other bytes");
                good += 1;
            }
            Err(_) => errors += 1,
        }
    }
    // Search must only return stored resources, each exactly as written.
    match tenant.search_resources(&SearchQuery::new(canary_embedding(11), 5)).await {
        Ok(hits) => {
            for hit in hits {
                assert_eq!(Some(&hit.resource), written.get(&hit.resource.id), "search garbage");
            }
        }
        Err(_) => errors += 1,
    }
    format!("opened; {good} read intact, {errors} errors")
}

/// Each open seals under a session of its own, registered under the next session number; a
/// value names its session by that number. Values of every earlier open read back; a removed
/// registration makes its session's values errors, never garbage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_of_every_earlier_open_read_back_by_their_session_number() {
    let dir = tempfile::tempdir().unwrap();
    let mut written = Vec::new();
    for round in 0..4 {
        let engine = engine(dir.path(), raw_key()).unwrap();
        let tenant = if round == 0 {
            engine.create_tenant(&tenant_id(), TenantConfig::default()).await.unwrap()
        } else {
            engine.tenant(&tenant_id()).await.unwrap()
        };
        let note = NewResource::new(format!("written in open {round}"))
            .with_embedding(canary_embedding(round));
        written.push(tenant.create_resource(note).await.unwrap());
        for resource in &written {
            assert_eq!(&tenant.get_resource(resource.id).await.unwrap(), resource);
        }
    }
    {
        let db = raw_db(&dir.path().join("vault"));
        let meta = db.cf_handle("meta").unwrap();
        let sessions: Vec<Vec<u8>> = db
            .prefix_iterator_cf(meta, b"session/")
            .map(|item| item.unwrap().0.to_vec())
            .take_while(|key| key.starts_with(b"session/"))
            .collect();
        let numbers: Vec<u32> =
            sessions.iter().map(|k| u32::from_be_bytes(k[8..].try_into().unwrap())).collect();
        // Creating the tenant is an open of its own (session 0, which sealed its settings);
        // then one session per open, numbered in order.
        assert_eq!(numbers, [0, 1, 2, 3, 4]);
        // Open 2's resource names session 3 right after the format byte.
        let value = raw_value(&db, "resources", written[2].id.as_bytes());
        assert_eq!(&value[..2], &[0xA3, 3]);
        assert!(value.len() < 64 + written[2].content.len());
        db.delete_cf(meta, [&b"session/"[..], &3u32.to_be_bytes()].concat()).unwrap();
    }
    let engine = engine(dir.path(), raw_key()).unwrap();
    let tenant = engine.tenant(&tenant_id()).await.unwrap();
    assert!(is_corrupt(tenant.get_resource(written[2].id).await), "its session is gone");
    for i in [0, 1, 3] {
        assert_eq!(tenant.get_resource(written[i].id).await.unwrap(), written[i]);
    }
}

/// Every way a batch is encoded on an encrypted tenant reads back whole after a reopen: records
/// of a few hundred bytes (sealed here and on the helper thread, in chunks), the same with a
/// few small embeddings (the embeddings sealed here), records with enough embedding bytes to be
/// encoded on rayon's pool, short records (each sealed as it is encoded), and resources
/// inserted with their ids (in a transaction). Empty contents and contents longer than the
/// room kept for them are among them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_of_every_shape_read_back_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let content = |i: usize| match i % 5 {
        0 => String::new(),
        1 => format!("{CONTENT_CANARY} {i} {}", "long ".repeat(i % 300)),
        _ => format!("note {i}"),
    };
    // Every `every`th resource has an embedding (none when 0).
    let new = |i: usize, every: usize| {
        let mut resource = NewResource::new(content(i));
        resource.metadata.insert("n".into(), i.into());
        if every > 0 && i.is_multiple_of(every) {
            resource = resource.with_embedding(canary_embedding(i));
        }
        resource
    };
    let mut written = BTreeMap::new();
    {
        let engine = engine(dir.path(), raw_key()).unwrap();
        let tenant = engine.create_tenant(&tenant_id(), TenantConfig::default()).await.unwrap();
        for (records, every) in [(1000, 0), (700, 60), (300, 1), (999, 1), (257, 0), (31, 0)] {
            let batch = (0..records).map(|i| new(i, every)).collect();
            for resource in tenant.batch_create_resources(batch).await.unwrap() {
                written.insert(resource.id, resource);
            }
        }
        let short = |i: usize| match i % 9 {
            0 => NewResource::new(""),
            _ => NewResource::new(format!("{CONTENT_CANARY} {i}")),
        };
        let batch = (0..600).map(short).collect();
        for resource in tenant.batch_create_resources(batch).await.unwrap() {
            written.insert(resource.id, resource);
        }
        // The same records again, with their ids, in a tenant of their own.
        let copy = engine.create_tenant(&copy_id(), TenantConfig::default()).await.unwrap();
        let all: Vec<Resource> = written.values().cloned().collect();
        copy.insert_resources(&all).await.unwrap();
        for resource in written.values().take(5) {
            assert_eq!(&tenant.get_resource(resource.id).await.unwrap(), resource);
        }
    }
    let engine = engine(dir.path(), raw_key()).unwrap();
    for id in [tenant_id(), copy_id()] {
        let tenant = engine.tenant(&id).await.unwrap();
        for (id, resource) in &written {
            assert_eq!(&tenant.get_resource(*id).await.unwrap(), resource);
        }
    }
}

fn copy_id() -> TenantId {
    TenantId::new("vault-copy").unwrap()
}
