//! Attacks on tenant isolation in the PostgreSQL provider (issue 4, item 7).
//!
//! Run through `scripts/with-postgres.sh`; without `PERCOLATE_TEST_POSTGRES_URL` every test
//! fails rather than skips.
#![cfg(feature = "postgres")]

use percolate::postgres::tenant::SchemaName;
use percolate::postgres::{PgConfig, PgProvider};
use percolate::{
    Direction, EntityQuery, Error, MemoryEngine, NewEdge, NewEntity, NewMoment, NewResource,
    RecordKind, SearchQuery, TenantConfig, TenantHandle, TenantId, TimeRange, Timestamp,
    TraverseQuery,
};

fn url(variable: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| {
        panic!(
            "{variable} is not set: run these tests through scripts/with-postgres.sh (e.g. \
             scripts/with-postgres.sh cargo test --release --features postgres --test \
             postgres_isolation)"
        )
    })
}

fn config() -> PgConfig {
    PgConfig::new(url("PERCOLATE_TEST_POSTGRES_URL"))
        .with_admin_url(url("PERCOLATE_TEST_POSTGRES_ADMIN_URL"))
}

async fn engine(config: PgConfig) -> MemoryEngine<PgProvider> {
    MemoryEngine::new(PgProvider::connect(config).await.expect("connect"))
}

fn fresh_id(prefix: &str) -> TenantId {
    let uuid = uuid::Uuid::now_v7().simple().to_string();
    TenantId::new(format!("{prefix}{}", &uuid[uuid.len() - 20..])).expect("valid tenant id")
}

async fn tenant(engine: &MemoryEngine<PgProvider>, prefix: &str) -> TenantHandle<PgProvider> {
    engine.create_tenant(&fresh_id(prefix), TenantConfig::default()).await.expect("create tenant")
}

fn is_not_found<T: std::fmt::Debug>(result: percolate::Result<T>) -> bool {
    matches!(result, Err(Error::NotFound { .. }))
}

/// A raw connection to the server named by the environment variable `var`, below the
/// provider.
async fn raw_client(var: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&url(var), tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("raw connect ({var}): {e}"));
    tokio::spawn(connection);
    client
}

/// A raw connection as the application role, for looking under the provider.
async fn raw_app_client() -> tokio_postgres::Client {
    raw_client("PERCOLATE_TEST_POSTGRES_URL").await
}

/// The search function of `tenant`'s schema, once its background index build created it.
async fn search_function_of(tenant: &TenantId) -> String {
    let client = raw_app_client().await;
    let schema = SchemaName::of(tenant);
    for _ in 0..500 {
        let found = client
            .query_one(
                "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
                 WHERE n.nspname = $1 AND p.proname = 'nearest_resources'",
                &[&schema.as_str()],
            )
            .await
            .expect("catalog")
            .get::<_, i64>(0);
        if found == 1 {
            return format!("{schema}.nearest_resources");
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("no search function in {schema} after 10 s");
}

/// The search function sets the tenant it is given, for its own statement only: called by
/// hand with another tenant's id it finds nothing, and it leaves no setting behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_search_function_answers_only_for_the_tenant_it_sets_and_leaves_nothing_set() {
    let engine = engine(config()).await;
    let a = tenant(&engine, "fa").await;
    let b = tenant(&engine, "fb").await;
    b.create_resource(NewResource::new("b's secret").with_embedding(vec![1.0, 0.0]))
        .await
        .expect("resource");
    let function = search_function_of(b.id()).await;
    let client = raw_app_client().await;
    let call = format!("SELECT content FROM {function}($1, $2, $3, $4)");
    let query = pgvector::Vector::from(vec![1.0, 0.0]);
    for (caller, expected) in [(a.id(), 0), (b.id(), 1)] {
        let rows =
            client.query(&call, &[&query, &10i64, &caller.as_str(), &"40"]).await.expect("call");
        assert_eq!(rows.len(), expected, "called for {caller}");
        let left: Option<String> = client
            .query_one("SELECT nullif(current_setting('app.current_tenant', true), '')", &[])
            .await
            .expect("setting")
            .get(0);
        assert_eq!(left, None, "the tenant setting outlived the call");
    }
    let definer: bool = client
        .query_one(
            "SELECT bool_or(p.prosecdef) FROM pg_proc p \
             JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname LIKE 't\\_%'",
            &[],
        )
        .await
        .expect("catalog")
        .get(0);
    assert!(!definer, "a tenant function runs with its owner's rights");
    engine.delete_tenant(a.id()).await.expect("delete tenant");
    engine.delete_tenant(b.id()).await.expect("delete tenant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_a_cannot_read_change_or_delete_tenant_b_records_through_any_operation() {
    let engine = engine(config()).await;
    let a = tenant(&engine, "a").await;
    let b = tenant(&engine, "b").await;
    let resource = b
        .create_resource(NewResource::new("b's secret").with_embedding(vec![1.0, 0.0, 0.0]))
        .await
        .expect("resource");
    let x = b.create_entity(NewEntity::new("Bob Secret", "person")).await.expect("entity");
    let y = b.create_entity(NewEntity::new("Bob Other", "person")).await.expect("entity");
    let edge = b.create_edge(NewEdge::new(x.id, y.id, "knows")).await.expect("edge");
    let moment = b
        .create_moment(NewMoment::new(Timestamp::from_micros(0), Timestamp::from_micros(10), "m"))
        .await
        .expect("moment");
    a.create_resource(NewResource::new("a's own").with_embedding(vec![1.0, 0.0, 0.0]))
        .await
        .expect("a resource");

    // Reads.
    assert!(is_not_found(a.get_resource(resource.id).await));
    assert!(is_not_found(a.get_entity(x.id).await));
    assert!(is_not_found(a.get_edge(edge.id).await));
    assert!(is_not_found(a.get_moment(moment.id).await));
    assert!(is_not_found(a.get_edges(x.id, Direction::Both, None).await));
    assert!(is_not_found(a.traverse(&TraverseQuery::new(x.id, 3)).await));
    let hits =
        a.search_resources(&SearchQuery::new(vec![1.0, 0.0, 0.0], 10)).await.expect("search");
    assert!(hits.iter().all(|h| h.resource.id != resource.id), "search leaked b's resource");
    let found = a.search_entities(&EntityQuery::new("bob")).await.expect("entity search");
    assert!(found.is_empty(), "entity search leaked {found:?}");
    let moments = a.moments_in_range(&TimeRange::all()).await.expect("moments");
    assert!(moments.is_empty(), "time range leaked {moments:?}");
    for kind in RecordKind::ALL {
        let page = a.scan(kind, None, 1000).await.expect("scan");
        let leaked = page.iter().any(|r| match r {
            percolate::Record::Resource(r) => r.id == resource.id,
            percolate::Record::Entity(e) => e.id == x.id || e.id == y.id,
            percolate::Record::Edge(e) => e.id == edge.id,
            percolate::Record::Moment(m) => m.id == moment.id,
        });
        assert!(!leaked, "scan of {kind:?} leaked");
    }

    // Updates and deletes with b's ids.
    assert!(is_not_found(a.update_resource(resource.clone()).await));
    assert!(is_not_found(a.update_entity(x.clone()).await));
    assert!(is_not_found(a.update_moment(moment.clone()).await));
    assert!(is_not_found(a.delete_resource(resource.id).await));
    assert!(is_not_found(a.delete_entity(x.id).await));
    assert!(is_not_found(a.delete_edge(edge.id).await));
    assert!(is_not_found(a.delete_moment(moment.id).await));
    assert!(is_not_found(a.create_edge(NewEdge::new(x.id, y.id, "knows")).await));

    // The same in a transaction.
    let mut txn = a.begin().await.expect("begin");
    assert!(is_not_found(txn.get_entity(x.id).await));
    assert!(is_not_found(txn.update_entity(x.clone()).await));
    assert!(is_not_found(txn.delete_entity(x.id).await));
    assert!(is_not_found(txn.delete_edge(edge.id).await));
    assert!(is_not_found(txn.create_edge(NewEdge::new(x.id, y.id, "knows")).await));
    txn.commit().await.expect("commit");

    // Inserting with b's ids lands in a, never in b.
    let mut forged = resource.clone();
    forged.content = "forged by a".to_owned();
    a.insert_resources(std::slice::from_ref(&forged)).await.expect("insert with b's id into a");
    let mut forged_entity = x.clone();
    forged_entity.name = "Forged".to_owned();
    a.insert_entity(&forged_entity).await.expect("insert entity with b's id into a");

    // B is untouched.
    assert_eq!(b.get_resource(resource.id).await.expect("b resource").content, "b's secret");
    assert_eq!(b.get_entity(x.id).await.expect("b entity").name, "Bob Secret");
    assert_eq!(b.get_edge(edge.id).await.expect("b edge"), edge);
    assert_eq!(b.get_moment(moment.id).await.expect("b moment"), moment);
    assert_eq!(b.get_edges(x.id, Direction::Out, None).await.expect("b edges"), vec![edge]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_tenant_ids_are_rejected_before_sql() {
    let long_a = format!("{}a", "x".repeat(63));
    let long_b = format!("{}b", "x".repeat(63));
    let hostile = [
        "x\"; drop schema public cascade; --",
        "x'; drop table percolate.tenants; --",
        "\"",
        "'",
        "a\\b",
        "a\0b",
        "Acme",
        "ACME",
        "acme ",
        "a.b",
        "public",
        &long_a,
        &long_b,
        "",
        "-a",
    ];
    let engine = engine(config()).await;
    // A tenant of this test's own, with a record: other tests create and delete their tenants
    // concurrently, so only this one is known to outlive the attempts.
    let sentinel = tenant(&engine, "sentinel").await;
    let record = sentinel.create_resource(NewResource::new("still here")).await.expect("record");
    for id in hostile {
        if id == "public" {
            // A valid id that names a built-in schema: it must get its own schema anyway.
            let tenant = TenantId::new(id).expect("valid");
            assert_ne!(SchemaName::of(&tenant).as_str(), "public");
            continue;
        }
        assert!(
            matches!(TenantId::new(id), Err(Error::Invalid { .. })),
            "{id:?} was accepted as a tenant id"
        );
        let parsed: Result<TenantId, _> = serde_json::from_value(serde_json::json!(id));
        assert!(parsed.is_err(), "{id:?} deserialized as a tenant id");
    }
    // Valid ids that differ only where a naive mapping would merge them get different schemas.
    let pairs = [("a-b", "a_b"), ("x-", "x_"), ("a--b", "a_-b")];
    for (left, right) in pairs {
        let (left, right) =
            (TenantId::new(left).expect("valid"), TenantId::new(right).expect("valid"));
        assert_ne!(SchemaName::of(&left), SchemaName::of(&right));
    }
    let max = "z".repeat(percolate::TENANT_ID_MAX_LEN);
    let max_dash = format!("z{}", "-".repeat(percolate::TENANT_ID_MAX_LEN - 1));
    for id in [max, max_dash] {
        let id = TenantId::new(id).expect("valid");
        assert!(SchemaName::of(&id).as_str().len() <= 63);
        engine.create_tenant(&id, TenantConfig::default()).await.ok();
        engine.tenant(&id).await.expect("longest ids work");
        engine.delete_tenant(&id).await.expect("delete");
    }
    // Nothing was dropped by the attempts.
    let after = engine.list_tenants().await.expect("list");
    assert!(after.contains(sentinel.id()));
    assert_eq!(sentinel.get_resource(record.id).await.expect("record survives"), record);
    engine.delete_tenant(sentinel.id()).await.expect("delete sentinel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_role_is_not_privileged_and_owns_nothing() {
    let engine = engine(config()).await;
    let _tenant = tenant(&engine, "r").await;
    let client = raw_app_client().await;
    let row = client
        .query_one(
            "SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb FROM pg_roles \
             WHERE rolname = current_user",
            &[],
        )
        .await
        .expect("role");
    let flags: (bool, bool, bool, bool) = (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(flags, (false, false, false, false), "superuser, bypassrls, createrole, createdb");
    let owned: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner \
             WHERE r.rolname = current_user",
            &[],
        )
        .await
        .expect("owned")
        .get(0);
    assert_eq!(owned, 0, "the application role owns relations");
    let functions: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner \
             WHERE r.rolname = current_user",
            &[],
        )
        .await
        .expect("functions")
        .get(0);
    assert_eq!(functions, 0, "the application role owns functions");
    // Every tenant table has RLS enabled and forced, with a policy.
    let unprotected: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname LIKE 't\\_%' AND c.relkind = 'r' \
               AND NOT (c.relrowsecurity AND c.relforcerowsecurity \
                        AND EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid))",
            &[],
        )
        .await
        .expect("rls")
        .get(0);
    assert_eq!(unprotected, 0, "a tenant table lacks forced row-level security");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_level_security_hides_and_refuses_other_tenants_rows_at_the_database() {
    let engine = engine(config()).await;
    let b = tenant(&engine, "b").await;
    let secret = b.create_entity(NewEntity::new("Secret", "thing")).await.expect("entity");
    let schema = SchemaName::of(b.id());
    let mut client = raw_app_client().await;
    let select = format!("SELECT count(*) FROM {schema}.entities");

    // No tenant set: the policy cannot even be evaluated (fails closed) or matches no row.
    if let Ok(row) = client.query_one(&select, &[]).await {
        assert_eq!(row.get::<_, i64>(0), 0);
    }

    // Set to another tenant: nothing visible, nothing changeable, nothing insertable as b.
    let txn = client.transaction().await.expect("begin");
    txn.query_one("SELECT set_config('app.current_tenant', 'someone-else', true)", &[])
        .await
        .expect("set");
    let count: i64 = txn.query_one(&select, &[]).await.expect("select").get(0);
    assert_eq!(count, 0);
    let updated = txn
        .execute(&format!("UPDATE {schema}.entities SET name = 'pwned'"), &[])
        .await
        .expect("update");
    assert_eq!(updated, 0);
    let deleted =
        txn.execute(&format!("DELETE FROM {schema}.entities"), &[]).await.expect("delete");
    assert_eq!(deleted, 0);
    let forged = txn
        .execute(
            &format!(
                "INSERT INTO {schema}.entities \
                 (tenant_id, id, name, kind, words, properties, created_at, updated_at) \
                 VALUES ($1, gen_random_uuid(), 'x', 'x', '{{}}', '{{}}', 0, 0)"
            ),
            &[&b.id().as_str()],
        )
        .await;
    assert!(forged.is_err(), "WITH CHECK let a row for b in while set to another tenant");
    drop(txn);

    // The application role cannot switch RLS off or take the table.
    for attack in [
        format!("ALTER TABLE {schema}.entities DISABLE ROW LEVEL SECURITY"),
        format!("ALTER TABLE {schema}.entities NO FORCE ROW LEVEL SECURITY"),
        format!("DROP POLICY tenant_isolation ON {schema}.entities"),
        "SET row_security = off".to_owned(),
    ] {
        let result = client.batch_execute(&attack).await;
        if attack.starts_with("SET") {
            // Allowed to set, but with row_security off a query that RLS would filter errors
            // instead of bypassing the policy.
            let leaked = client.query_one(&select, &[]).await;
            assert!(leaked.is_err(), "row_security = off exposed rows");
            client.batch_execute("RESET row_security").await.expect("reset");
        } else {
            assert!(result.is_err(), "{attack} succeeded");
        }
    }
    assert_eq!(b.get_entity(secret.id).await.expect("still there").name, "Secret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_transaction_leaves_nothing_for_the_next_user_of_a_one_connection_pool() {
    let engine = engine(config().with_pool_size(1)).await;
    let a = tenant(&engine, "a").await;
    let b = tenant(&engine, "b").await;
    let before = engine.provider().probe_session().await.expect("probe");

    let mut txn = a.begin().await.expect("begin");
    let entity = txn.create_entity(NewEntity::new("Half Written", "thing")).await.expect("write");
    // The only connection is now inside a transaction with a's tenant set. Drop it mid-way.
    drop(txn);

    let probe = engine.provider().probe_session().await.expect("probe after drop");
    assert!(!probe.in_transaction, "the pooled connection is still inside a transaction");
    assert_eq!(probe.current_tenant, "", "a's tenant setting survived");
    assert_ne!(probe.backend_pid, before.backend_pid, "the mid-transaction connection was reused");

    // B runs on the pool's only connection and sees nothing of a's.
    let mine = b.create_entity(NewEntity::new("Bee", "thing")).await.expect("b write");
    assert!(is_not_found(b.get_entity(entity.id).await));
    let listed = b.search_entities(&EntityQuery::new("")).await.expect("b search");
    assert_eq!(listed.iter().map(|e| e.id).collect::<Vec<_>>(), vec![mine.id]);
    // And a's write was rolled back.
    assert!(is_not_found(a.get_entity(entity.id).await));

    // A cancelled operation (its future dropped half-way) is no different.
    let pending = a.create_entity(NewEntity::new("Cancelled", "thing"));
    let _ = tokio::time::timeout(std::time::Duration::from_micros(1), pending).await;
    let probe = engine.provider().probe_session().await.expect("probe after cancel");
    assert!(!probe.in_transaction);
    assert_eq!(probe.current_tenant, "");
    assert_eq!(probe.leftovers, Vec::<String>::new());
}

/// Inserts are one statement in an implicit transaction that sets the tenant itself: on a pool
/// of one connection, nothing of it is left for the next caller, after a write that succeeded
/// or one that failed at the database (the setting is rolled back with the statement).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_statement_write_leaves_no_tenant_setting_even_when_it_fails() {
    let engine = engine(config().with_pool_size(1)).await;
    let a = tenant(&engine, "wa").await;
    let b = tenant(&engine, "wb").await;
    let pid = assert_clean(&engine, "tenant creation").await;
    let resource = a.create_resource(NewResource::new("a's note")).await.expect("resource");
    assert_clean(&engine, "create_resource").await;
    let batch = vec![NewResource::new("one"), NewResource::new("two")];
    a.batch_create_resources(batch).await.expect("batch");
    assert_clean(&engine, "batch_create_resources").await;
    let x = a.create_entity(NewEntity::new("Ann", "person")).await.expect("entity");
    assert_clean(&engine, "create_entity").await;
    let edge = a.create_edge(NewEdge::new(x.id, x.id, "self")).await.expect("edge");
    assert_clean(&engine, "create_edge").await;
    let moment = a
        .create_moment(NewMoment::new(Timestamp::from_micros(0), Timestamp::from_micros(9), "m"))
        .await
        .expect("moment");
    assert_clean(&engine, "create_moment").await;

    // Failures raised by the server inside the statement: taken ids, a missing endpoint.
    let taken = a.insert_resources(std::slice::from_ref(&resource)).await;
    assert!(matches!(taken, Err(Error::AlreadyExists { .. })), "{taken:?}");
    assert_clean(&engine, "a failed insert of a resource").await;
    let taken = a.insert_resources(&[resource.clone(), resource.clone()]).await;
    assert!(matches!(taken, Err(Error::AlreadyExists { .. })), "{taken:?}");
    assert_clean(&engine, "a failed batch insert").await;
    let taken = a.insert_entity(&x).await;
    assert!(matches!(taken, Err(Error::AlreadyExists { .. })), "{taken:?}");
    assert_clean(&engine, "a failed insert of an entity").await;
    let taken = a.insert_edge(&edge).await;
    assert!(matches!(taken, Err(Error::AlreadyExists { .. })), "{taken:?}");
    let dangling = a.create_edge(NewEdge::new(x.id, percolate::EntityId::new(), "r")).await;
    assert!(is_not_found(dangling));
    assert_clean(&engine, "failed inserts of edges").await;
    let taken = a.insert_moment(&moment).await;
    assert!(matches!(taken, Err(Error::AlreadyExists { .. })), "{taken:?}");
    let after_failures = assert_clean(&engine, "a failed insert of a moment").await;
    // One connection served all of it, so each probe saw what the writes left.
    assert_eq!(after_failures, pid, "the pool's connection was replaced");

    // The next caller, another tenant, on the same connection: none of a's rows.
    for kind in RecordKind::ALL {
        assert_eq!(b.scan(kind, None, 100).await.expect("scan").len(), 0, "{kind:?}");
    }
    assert!(is_not_found(b.get_resource(resource.id).await));
    assert_eq!(a.scan(RecordKind::Resource, None, 100).await.expect("scan").len(), 3);
    engine.delete_tenant(a.id()).await.expect("delete tenant");
    engine.delete_tenant(b.id()).await.expect("delete tenant");
}

/// The shape of the provider's one-statement insert (`sql::AS_TENANT`), by hand as the
/// application role: the row's `tenant_id` must be the tenant the statement sets, or the
/// policy's `WITH CHECK` refuses it; the setting made in the statement is what the check sees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_statement_insert_cannot_write_a_row_for_another_tenant() {
    let engine = engine(config()).await;
    let a = tenant(&engine, "ia").await;
    let b = tenant(&engine, "ib").await;
    let client = raw_app_client().await;
    let insert = |schema: &SchemaName| {
        format!(
            "WITH tenant AS MATERIALIZED \
                 (SELECT set_config('app.current_tenant', $1, true) AS id) \
             INSERT INTO {schema}.entities \
                 (tenant_id, id, name, kind, words, properties, created_at, updated_at) \
             SELECT $2, gen_random_uuid(), 'Forged', 'x', '{{}}', '{{}}', 0, 0 FROM tenant"
        )
    };
    let (a_schema, b_schema) = (SchemaName::of(a.id()), SchemaName::of(b.id()));
    let (a_id, b_id) = (a.id().as_str(), b.id().as_str());
    // Set to a, claiming b: refused, in b's schema and in a's.
    for schema in [&b_schema, &a_schema] {
        let forged = client.execute(&insert(schema), &[&a_id, &b_id]).await;
        let error = forged.expect_err("WITH CHECK let in a row for b while set to a");
        assert_eq!(error.code(), Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE));
        let left: Option<String> = client
            .query_one("SELECT nullif(current_setting('app.current_tenant', true), '')", &[])
            .await
            .expect("setting")
            .get(0);
        assert_eq!(left, None, "the failed statement left its tenant setting");
    }
    // The control: the row for the tenant the statement sets goes in, so the check ran after
    // the setting (before it, no tenant would match).
    let inserted = client.execute(&insert(&a_schema), &[&a_id, &a_id]).await.expect("insert");
    assert_eq!(inserted, 1);
    let found = a.search_entities(&EntityQuery::new("")).await.expect("search");
    assert_eq!(found.len(), 1);
    assert!(b.search_entities(&EntityQuery::new("")).await.expect("search").is_empty());
    engine.delete_tenant(a.id()).await.expect("delete tenant");
    engine.delete_tenant(b.id()).await.expect("delete tenant");
}

/// Asserts the pool's next connection carries nothing: no transaction, no tenant, no session
/// state; returns its server process.
async fn assert_clean(engine: &MemoryEngine<PgProvider>, after: &str) -> i32 {
    let probe = engine.provider().probe_session().await.expect("probe");
    assert!(!probe.in_transaction, "a transaction left open after {after}");
    assert_eq!(probe.current_tenant, "", "the tenant setting survived {after}");
    assert_eq!(probe.leftovers, Vec::<String>::new(), "session state left by {after}");
    probe.backend_pid
}

/// The pool cleans a connection only when it may carry session state (see the provider's
/// `conn` module): every operation must leave none, on the connection the next user gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_operation_leaves_session_state_for_the_next_user_of_a_one_connection_pool() {
    let engine = engine(config().with_pool_size(1)).await;
    let a = tenant(&engine, "a").await;
    let pid = assert_clean(&engine, "tenant creation").await;
    let mut new = NewResource::new("a note").with_embedding(vec![1.0, 0.0, 0.0]);
    new.metadata.insert("topic".into(), serde_json::json!("x"));
    let resource = a.create_resource(new).await.expect("resource");
    assert_clean(&engine, "create_resource").await;
    a.get_resource(resource.id).await.expect("get");
    assert_clean(&engine, "get_resource").await;
    a.update_resource(resource.clone()).await.expect("update");
    assert_clean(&engine, "update_resource").await;
    a.search_resources(&SearchQuery::new(vec![1.0, 0.0, 0.0], 5)).await.expect("search");
    assert_clean(&engine, "search_resources").await;
    // Once the index is built, unfiltered searches call the tenant's search function instead
    // (a tenant opened after the build knows it has one).
    search_function_of(a.id()).await;
    let reopened = engine.tenant(a.id()).await.expect("open");
    reopened.search_resources(&SearchQuery::new(vec![1.0, 0.0, 0.0], 5)).await.expect("search");
    assert_clean(&engine, "search_resources through the search function").await;
    let mut filtered = SearchQuery::new(vec![1.0, 0.0, 0.0], 5);
    filtered.filter =
        Some(percolate::Filter::parse(&serde_json::json!({"topic": "x"})).expect("filter"));
    a.search_resources(&filtered).await.expect("filtered search");
    assert_clean(&engine, "a filtered search_resources").await;
    let x = a.create_entity(NewEntity::new("Ann", "person")).await.expect("entity");
    let y = a.create_entity(NewEntity::new("Bo", "person")).await.expect("entity");
    a.create_edge(NewEdge::new(x.id, y.id, "knows")).await.expect("edge");
    assert_clean(&engine, "create_edge").await;
    a.get_edges(x.id, Direction::Both, None).await.expect("edges");
    a.traverse(&TraverseQuery::new(x.id, 3)).await.expect("traverse");
    assert_clean(&engine, "traverse").await;
    a.search_entities(&EntityQuery::new("an")).await.expect("entities");
    a.create_moment(NewMoment::new(Timestamp::from_micros(0), Timestamp::from_micros(9), "m"))
        .await
        .expect("moment");
    a.moments_in_range(&TimeRange::all()).await.expect("moments");
    for kind in RecordKind::ALL {
        a.scan(kind, None, 100).await.expect("scan");
    }
    assert_clean(&engine, "entity search, moments and scans").await;
    assert!(is_not_found(a.get_resource(percolate::ResourceId::new()).await));
    assert_clean(&engine, "a failed get").await;
    let mut txn = a.begin().await.expect("begin");
    txn.create_entity(NewEntity::new("Cy", "person")).await.expect("txn write");
    txn.commit().await.expect("commit");
    assert_clean(&engine, "a committed transaction").await;
    let mut txn = a.begin().await.expect("begin");
    txn.delete_entity(x.id).await.expect("txn delete");
    txn.rollback().await.expect("rollback");
    let again = assert_clean(&engine, "a rolled back transaction").await;
    // One connection served all of it: each probe looked at what the operations left.
    assert_eq!(again, pid, "the pool's connection was replaced");
    engine.delete_tenant(a.id()).await.expect("delete tenant");
}

/// The other half of the bargain: a connection that did carry session state is cleaned before
/// its next user runs anything, and the probe sees such state when it is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_left_with_session_state_is_clean_for_its_next_user() {
    let engine = engine(config().with_pool_size(1)).await;
    let left = engine.provider().leave_session_state().await.expect("leave state");
    assert_eq!(left.current_tenant, "percolate-leftover");
    for expected in
        ["setting application_name", "listening percolate_leftover", "cursor percolate_leftover"]
    {
        assert!(left.leftovers.iter().any(|l| l == expected), "{expected} not seen: {left:?}");
    }
    assert!(left.leftovers.iter().any(|l| l.starts_with("advisory lock")), "{left:?}");
    let pid = assert_clean(&engine, "a user that left session state").await;
    assert_eq!(pid, left.backend_pid, "cleaned by replacing the connection, not by cleaning it");
}

/// What the next user of a connection sees of tenant `a` when it runs a query without setting
/// any tenant, after `a`'s user set the tenant with `set_tenant`.
async fn rows_leaked_to_next_user(
    client: &tokio_postgres::Client,
    schema: &SchemaName,
    set_tenant: &str,
    tenant: &str,
) -> i64 {
    client.batch_execute("BEGIN").await.expect("begin");
    client.query(set_tenant, &[&tenant]).await.expect("set tenant");
    client.batch_execute("COMMIT").await.expect("commit");
    // The next user of the connection forgets to set its tenant.
    client
        .query_one(&format!("SELECT count(*) FROM {schema}.entities"), &[])
        .await
        .expect("next user's query")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_control_a_session_level_set_leaks_where_set_config_local_does_not() {
    let engine = engine(config()).await;
    let a = tenant(&engine, "a").await;
    a.create_entity(NewEntity::new("Visible Only To A", "thing")).await.expect("entity");
    let schema = SchemaName::of(a.id());
    let client = raw_app_client().await;

    // What the provider does: transaction-local. The next user sees nothing.
    let local = rows_leaked_to_next_user(
        &client,
        &schema,
        "SELECT set_config('app.current_tenant', $1, true)",
        a.id().as_str(),
    )
    .await;
    assert_eq!(local, 0, "a transaction-local tenant setting leaked");

    // The mistake the issue forbids: a session-level setting outlives the transaction, and the
    // leak detector above catches it.
    let session = rows_leaked_to_next_user(
        &client,
        &schema,
        "SELECT set_config('app.current_tenant', $1, false)",
        a.id().as_str(),
    )
    .await;
    assert_eq!(session, 1, "the negative control did not detect the session-level leak");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_failure_names_the_server_but_not_the_password() {
    // Port 1 on loopback: nothing listens there.
    let config = PgConfig::new("postgres://someone:hunter2-secret@127.0.0.1:1/percolate");
    let error = match PgProvider::connect(config).await {
        Ok(_) => panic!("connected to a closed port"),
        Err(e) => e,
    };
    let mut chain = format!("{error} | {error:?}");
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        chain.push_str(&format!(" | {cause} | {cause:?}"));
        source = cause.source();
    }
    assert!(matches!(error, Error::Backend { .. }), "{chain}");
    assert!(chain.contains("127.0.0.1:1"), "the address is missing: {chain}");
    assert!(!chain.contains("hunter2"), "the password leaked: {chain}");
}

/// As the application role with the transaction set to `set`, inserts into `schema` one row of
/// every table tagged `tag` (the edge between `from` and `to`, entities of that schema); then
/// counts the rows of `schema` tagged `tag` that the same transaction sees, and commits.
async fn forge_rows(
    client: &mut tokio_postgres::Client,
    schema: &SchemaName,
    set: &TenantId,
    tag: &TenantId,
    (from, to): (uuid::Uuid, uuid::Uuid),
) -> Result<i64, tokio_postgres::Error> {
    let txn = client.transaction().await?;
    txn.execute("SELECT set_config('app.current_tenant', $1, true)", &[&set.as_str()]).await?;
    let tag = tag.as_str();
    let inserts = [
        format!(
            "INSERT INTO {schema}.resources \
             (tenant_id, id, content, metadata, embedding, created_at, updated_at) \
             VALUES ($1, gen_random_uuid(), 'forged', '{{}}', '[1,0]', 0, 0)"
        ),
        format!(
            "INSERT INTO {schema}.entities \
             (tenant_id, id, name, kind, words, properties, created_at, updated_at) \
             VALUES ($1, gen_random_uuid(), 'Forged', 'x', '{{}}', '{{}}', 0, 0)"
        ),
        format!(
            "INSERT INTO {schema}.moments \
             (tenant_id, id, start_at, end_at, kind, content, entities, metadata) \
             VALUES ($1, gen_random_uuid(), 0, 1, 'x', 'forged', '{{}}', '{{}}')"
        ),
    ];
    for insert in &inserts {
        txn.execute(insert, &[&tag]).await?;
    }
    txn.execute(
        &format!(
            "INSERT INTO {schema}.edges \
             (tenant_id, id, from_id, to_id, relation, weight, properties, created_at) \
             VALUES ($1, gen_random_uuid(), $2, $3, 'forged', 1, '{{}}', 0)"
        ),
        &[&tag, &from, &to],
    )
    .await?;
    let mut seen = 0;
    for table in ["resources", "entities", "edges", "moments"] {
        let count: i64 = txn
            .query_one(
                &format!("SELECT count(*) FROM {schema}.{table} WHERE tenant_id = $1"),
                &[&tag],
            )
            .await?
            .get(0);
        seen += count;
    }
    txn.commit().await?;
    Ok(seen)
}

/// Each schema accepts and shows only rows of its own tenant, whatever tenant the transaction
/// is set to: set to a, the application role can put no row tagged a into b's schema (the
/// setting alone would allow it, and show the rows back), and b's own rows stay intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_accepts_and_shows_only_rows_of_its_own_tenant() {
    let engine = engine(config()).await;
    let a = tenant(&engine, "sa").await;
    let b = tenant(&engine, "sb").await;
    let x = b.create_entity(NewEntity::new("Bob", "person")).await.expect("entity");
    let y = b.create_entity(NewEntity::new("Eve", "person")).await.expect("entity");
    let ends = (x.id.as_uuid(), y.id.as_uuid());
    let b_schema = SchemaName::of(b.id());
    let mut client = raw_app_client().await;
    let refused = |result: Result<i64, tokio_postgres::Error>| {
        let error = result.expect_err("a row tagged a went into b's schema");
        assert_eq!(error.code(), Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE));
    };
    refused(forge_rows(&mut client, &b_schema, a.id(), a.id(), ends).await);
    // The provider's own rows still go in: a's into a's schema, as a.
    a.create_entity(NewEntity::new("Ann", "person")).await.expect("a's own entity");

    for set in [a.id(), b.id()] {
        let txn = client.transaction().await.expect("begin");
        txn.execute("SELECT set_config('app.current_tenant', $1, true)", &[&set.as_str()])
            .await
            .expect("set");
        for table in ["resources", "entities", "edges", "moments"] {
            let forged: i64 = txn
                .query_one(
                    &format!("SELECT count(*) FROM {b_schema}.{table} WHERE tenant_id <> $1"),
                    &[&b.id().as_str()],
                )
                .await
                .expect("count")
                .get(0);
            assert_eq!(forged, 0, "{table} of b shows rows of another tenant when set to {set}");
        }
        txn.commit().await.expect("commit");
    }
    let found = b.search_entities(&EntityQuery::new("")).await.expect("search");
    assert_eq!(found.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["Bob", "Eve"]);
    b.create_entity(NewEntity::new("Bo", "person")).await.expect("b still writes");
    engine.delete_tenant(a.id()).await.expect("delete tenant");
    engine.delete_tenant(b.id()).await.expect("delete tenant");
}

/// The bootstrap superuser's URL (trusted on loopback by `scripts/with-postgres.sh`).
fn superuser_url() -> String {
    url("PERCOLATE_TEST_POSTGRES_SUPERUSER_URL")
}

/// `url("PERCOLATE_TEST_POSTGRES_URL")` as `role` (loopback trusts any password).
fn url_as(role: &str) -> String {
    let app = url("PERCOLATE_TEST_POSTGRES_URL");
    let at = app.find('@').expect("credentials in the url");
    format!("postgres://{role}:unused{}", &app[at..])
}

/// Creates the login role `role` with `attributes` (once), allowed to connect.
async fn make_role(role: &str, attributes: &str) {
    let (client, connection) = tokio_postgres::connect(&superuser_url(), tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("superuser connect: {e}"));
    tokio::spawn(connection);
    let statement = format!(
        "DO $$ BEGIN
             IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = '{role}') THEN
                 CREATE ROLE {role} LOGIN {attributes};
             END IF;
         END $$;
         GRANT CONNECT ON DATABASE percolate TO {role};
         GRANT USAGE ON SCHEMA public TO {role};"
    );
    // Tests making roles at once may race on the catalog; a retry settles it.
    for attempt in 0..5 {
        match client.batch_execute(&statement).await {
            Ok(()) => return,
            Err(e) if attempt == 4 => panic!("make role {role}: {e}"),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
}

/// What `connect` says when it refuses `config`; panics if it connects.
async fn refusal(config: PgConfig) -> String {
    match PgProvider::connect(config).await {
        Ok(_) => panic!("connected with a privileged application role"),
        Err(error) => {
            assert!(
                matches!(error, Error::Invalid { what: "postgres application role", .. }),
                "{error}"
            );
            let message = error.to_string();
            assert!(message.contains("allow_privileged_app_role"), "{message}");
            message
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_superuser_application_role_is_refused_unless_single_role_development_is_asked_for() {
    let admin = url("PERCOLATE_TEST_POSTGRES_ADMIN_URL");
    let config = PgConfig::new(superuser_url()).with_admin_url(admin);
    let message = refusal(config.clone()).await;
    assert!(message.contains("postgres is a superuser"), "{message}");
    let allowed = PgProvider::connect(config.with_allow_privileged_app_role(true))
        .await
        .expect("single-role development mode connects");
    assert_eq!(allowed.app_role(), "postgres");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_with_bypassrls_itself_or_through_a_membership_is_refused() {
    make_role("percolate_bypass", "BYPASSRLS NOSUPERUSER").await;
    let admin = url("PERCOLATE_TEST_POSTGRES_ADMIN_URL");
    let message = refusal(PgConfig::new(url_as("percolate_bypass")).with_admin_url(&admin)).await;
    assert!(message.contains("percolate_bypass has BYPASSRLS"), "{message}");
    make_role("percolate_bypass_member", "NOSUPERUSER NOBYPASSRLS IN ROLE percolate_bypass").await;
    let message =
        refusal(PgConfig::new(url_as("percolate_bypass_member")).with_admin_url(admin)).await;
    assert!(message.contains("percolate_bypass has BYPASSRLS"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_role_as_application_role_is_refused_with_or_without_an_admin_url() {
    let owner = url("PERCOLATE_TEST_POSTGRES_ADMIN_URL");
    let message = refusal(PgConfig::new(&owner)).await;
    assert!(message.contains("no admin url is set"), "{message}");
    let message = refusal(PgConfig::new(&owner).with_admin_url(&owner)).await;
    assert!(message.contains("the same role"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_of_the_owner_role_is_refused_because_it_owns_the_schemas() {
    // The registry exists once any provider connected.
    let _ = engine(config()).await;
    make_role("percolate_owner_member", "NOSUPERUSER NOBYPASSRLS IN ROLE percolate_owner").await;
    let admin = url("PERCOLATE_TEST_POSTGRES_ADMIN_URL");
    let message =
        refusal(PgConfig::new(url_as("percolate_owner_member")).with_admin_url(admin)).await;
    assert!(message.contains("it owns percolate"), "{message}");
}
