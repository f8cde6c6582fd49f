//! A process that forks after opening an encrypted store (as Python's `multiprocessing` and
//! pre-forking servers do) and its child each open a tenant and write to it: no two sealed
//! values on disk may share a key and nonce, which under AES-GCM would leak their plaintexts'
//! XOR and the authentication key.
#![cfg(unix)]

use std::collections::HashSet;
use std::path::Path;

use percolate::rocks::{MasterKey, RocksConfig, RocksProvider};
use percolate::{MemoryEngine, NewResource, TenantConfig, TenantId};

fn config(dir: &Path) -> RocksConfig {
    let mut config = RocksConfig::new(dir);
    config.master_key = Some(MasterKey::from_bytes([0x42; 32]));
    config
}

#[test]
fn a_forked_child_and_its_parent_never_reuse_a_key_and_nonce() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime
            .block_on(async {
                let engine = MemoryEngine::new(RocksProvider::open(config(dir.path()))?);
                engine.create_tenant(&TenantId::new("forked")?, TenantConfig::default()).await?;
                Ok::<_, percolate::Error>(())
            })
            .expect("create tenant");
    }
    let provider = RocksProvider::open(config(dir.path())).expect("open store");
    // SAFETY: `fork` is called with no lock held by this thread; the child only opens the
    // tenant, writes and leaves with `_exit`, never returning into the test harness.
    #[allow(unsafe_code)]
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let child = std::panic::AssertUnwindSafe(move || write_and_close(provider, "child"));
        let code = match std::panic::catch_unwind(child) {
            Ok(Ok(())) => 0,
            _ => 1,
        };
        // SAFETY: ends the child at once, without running the parent's exit handlers.
        #[allow(unsafe_code)]
        unsafe {
            libc::_exit(code)
        };
    }
    let mut status = 0;
    // SAFETY: waits for the child forked above; `status` outlives the call.
    #[allow(unsafe_code)]
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(waited, pid);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "child failed: {status}");
    write_and_close(provider, "parent").expect("parent writes");

    let provider = RocksProvider::open(config(dir.path())).expect("reopen");
    let nonces = provider.sealed_nonces(&TenantId::new("forked").expect("id")).expect("nonces");
    assert!(nonces.len() >= 4 * 20, "parent and child values are on disk: {}", nonces.len());
    let sessions: HashSet<_> = nonces.iter().map(|n| (n.session_id, n.session)).collect();
    let ids: HashSet<_> = sessions.iter().map(|(id, _)| *id).collect();
    assert!(sessions.len() >= 2, "the child and the parent each opened a session");
    assert_eq!(ids.len(), sessions.len(), "a session id was drawn twice: {sessions:?}");
    let unique: HashSet<_> = nonces.iter().collect();
    assert_eq!(unique.len(), nonces.len(), "a key and nonce pair repeats");
}

/// Writes through `provider` and closes every tenant it opened.
fn write_and_close(provider: RocksProvider, label: &str) -> percolate::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    runtime.block_on(async {
        let engine = MemoryEngine::new(provider);
        let tenant = engine.tenant(&TenantId::new("forked")?).await?;
        for i in 0..20 {
            tenant.create_resource(NewResource::new(format!("{label} single {i}"))).await?;
        }
        let batch = (0..20).map(|i| NewResource::new(format!("{label} batch {i}"))).collect();
        tenant.batch_create_resources(batch).await?;
        Ok(())
    })
}
