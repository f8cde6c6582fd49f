//! RocksDB-specific scenarios: the bounded cache of open tenant databases.

use percolate::rocks::{RocksConfig, RocksProvider};
use percolate::{Error, MemoryEngine, NewResource, TenantConfig, TenantId};

fn engine_with_capacity(dir: &std::path::Path, open_tenants: usize) -> MemoryEngine<RocksProvider> {
    let mut config = RocksConfig::new(dir);
    config.open_tenants = open_tenants;
    MemoryEngine::new(RocksProvider::open(config).expect("open store"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_tenants_than_open_slots_all_stay_readable() -> percolate::Result<()> {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = engine_with_capacity(dir.path(), 2);
    let mut written = Vec::new();
    for i in 0..12 {
        let id = TenantId::new(format!("tenant-{i}"))?;
        let tenant = engine.create_tenant(&id, TenantConfig::default()).await?;
        let resource = tenant.create_resource(NewResource::new(format!("content {i}"))).await?;
        written.push((id, resource));
    }
    // Every tenant was closed and reopened at least once by now; all data is still there.
    for round in 0..2 {
        for (id, resource) in &written {
            let tenant = engine.tenant(id).await?;
            assert_eq!(&tenant.get_resource(resource.id).await?, resource, "round {round}");
        }
    }
    assert_eq!(engine.list_tenants().await?.len(), 12);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_in_use_is_never_closed_or_deleted_under_its_handle() -> percolate::Result<()> {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = engine_with_capacity(dir.path(), 1);
    let held_id = TenantId::new("held")?;
    let held = engine.create_tenant(&held_id, TenantConfig::default()).await?;
    for i in 0..5 {
        let other = engine
            .create_tenant(&TenantId::new(format!("other-{i}"))?, TenantConfig::default())
            .await?;
        other.create_resource(NewResource::new("x")).await?;
    }
    // Over capacity, but the held tenant is still open and writable.
    let resource = held.create_resource(NewResource::new("still here")).await?;
    assert!(matches!(engine.delete_tenant(&held_id).await, Err(Error::Conflict(_))));
    assert_eq!(held.get_resource(resource.id).await?.content, "still here");
    drop(held);
    engine.delete_tenant(&held_id).await?;
    assert!(matches!(engine.tenant(&held_id).await, Err(Error::NotFound { .. })));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_that_is_not_a_tenant_is_refused_not_trusted() -> percolate::Result<()> {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("stray")).expect("mkdir");
    let engine = engine_with_capacity(dir.path(), 4);
    let result = engine.tenant(&TenantId::new("stray")?).await;
    assert!(result.is_err(), "a stray directory opened as a tenant: {result:?}");
    assert!(engine.list_tenants().await?.is_empty(), "a stray directory listed as a tenant");
    Ok(())
}
