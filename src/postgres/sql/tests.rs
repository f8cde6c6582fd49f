//! Unit tests of the SQL text: the statements the provider sends, checked without a server.
use super::*;

fn schema() -> SchemaName {
    SchemaName::of(&crate::model::TenantId::new("acme").expect("valid"))
}

#[test]
fn cosine_tenants_index_unit_vectors_and_search_by_the_same_expression() {
    let ddl = create_vector_index(&schema(), 384, Metric::Cosine, false).expect("indexed");
    assert!(ddl.contains("((l2_normalize(embedding)::halfvec(384)) halfvec_ip_ops)"), "{ddl}");
    assert!(ddl.ends_with("WITH (m = 8, ef_construction = 200)"), "{ddl}");
    let search =
        search_resources(&schema(), 384, Metric::Cosine, Order::Index(Layout::Unit), false);
    assert!(search.contains("ORDER BY (l2_normalize(embedding)::halfvec(384) <#>"), "{search}");
}

#[test]
fn the_search_function_sets_what_a_search_transaction_sets() {
    let function =
        create_search_function(&schema(), 384, Metric::Cosine, "app", false).expect("indexed");
    // The same settings, in the same order, as the statement sent with BEGIN.
    let settings: Vec<&str> = SET_SEARCH
        .match_indices("set_config('")
        .map(|(i, _)| &SET_SEARCH[i..i + SET_SEARCH[i..].find(',').expect("name ends")])
        .collect();
    assert_eq!(settings.len(), 8);
    assert!(SET_SEARCH.contains("'ivfflat.probes', '8'"));
    for name in &settings {
        assert!(function.contains(name), "{name}");
    }
    let search =
        search_resources(&schema(), 384, Metric::Cosine, Order::Index(Layout::Unit), false);
    assert!(function.contains(&format!("RETURN QUERY {search};")), "{function}");
    assert!(!function.to_uppercase().contains("SECURITY DEFINER"));
    assert!(function.contains("FROM PUBLIC"));
    assert!(create_search_function(&schema(), 5000, Metric::Cosine, "app", true).is_none());
}

#[test]
fn other_metrics_keep_the_typed_index() {
    for metric in [Metric::L2, Metric::Dot] {
        assert_eq!(new_layout(metric), Layout::Typed);
        let ddl = create_vector_index(&schema(), 384, metric, false).expect("indexed");
        assert!(ddl.contains("((embedding::vector(384)) vector_"), "{ddl}");
    }
    let search =
        search_resources(&schema(), 384, Metric::Cosine, Order::Index(Layout::Typed), false);
    assert!(search.contains("ORDER BY (embedding::vector(384) <=> ($1::vector)::vector(384))"));
}

#[test]
fn exact_searches_order_by_the_full_precision_distance() {
    let search = search_resources(&schema(), 3000, Metric::Cosine, Order::Exact, true);
    assert!(search.contains("metadata @> $3::jsonb"), "{search}");
    // A zero vector is at cosine distance 1, not NaN (which sorts after every number).
    let cosine = "ORDER BY COALESCE(NULLIF(embedding <=> $1::vector, 'NaN'::float8), 1), id";
    assert!(search.contains(cosine), "{search}");
    // No index beyond 4000 dimensions: the index order is the exact one.
    let search = search_resources(&schema(), 5000, Metric::L2, Order::Index(Layout::Typed), false);
    assert!(search.contains("ORDER BY (embedding <-> $1::vector), id"), "{search}");
    assert!(create_vector_index(&schema(), 5000, Metric::Cosine, true).is_none());
}

/// The statements of this module and its submodules, without [`SESSION_CLEAN`],
/// [`LEAVE_SESSION_STATE`] and the tests: what the provider runs.
fn statements() -> String {
    let main = include_str!("../sql.rs");
    let source = [
        &main[..main.find("#[cfg(test)]").expect("tests")],
        include_str!("batch.rs"),
        include_str!("search.rs"),
        include_str!("tail.rs"),
    ]
    .concat();
    let mut kept = String::new();
    let mut skipping = false;
    for line in source.lines() {
        if line.contains("const SESSION_CLEAN") || line.contains("const LEAVE_SESSION_STATE") {
            skipping = true;
        }
        if !skipping && !line.trim_start().starts_with("//") {
            kept.push_str(line);
            kept.push('\n');
        }
        if skipping && line.trim_end().ends_with("\";") {
            skipping = false;
        }
    }
    kept
}

/// What lets the pool skip the session cleanup for connections that ran only these
/// statements (see `conn`): none of them leaves state behind for the session.
#[test]
fn no_statement_sets_anything_for_the_session() {
    let sql = statements().to_uppercase();
    for (i, _) in sql.match_indices("SET_CONFIG(") {
        let call = &sql[i..i + sql[i..].find(')').expect("call ends")];
        assert!(call.ends_with(", TRUE"), "not transaction-local: {call})");
    }
    for (i, _) in sql.match_indices("SET ") {
        let after = &sql[i + 4..];
        // `UPDATE t SET` and `DO UPDATE SET` assign columns; `SET LOCAL` lasts until the
        // transaction ends.
        let words: Vec<&str> = sql[..i]
            .split_whitespace()
            .rev()
            .take(2)
            .map(|word| word.trim_matches(|c: char| !c.is_ascii_alphabetic()))
            .collect();
        let assignment = words.get(1) == Some(&"UPDATE") || words == ["UPDATE", "DO"];
        assert!(
            assignment || after.starts_with("LOCAL "),
            "a session-level SET: {}",
            &sql[i..(i + 60).min(sql.len())]
        );
    }
    for forbidden in [
        "LISTEN ",
        "PG_ADVISORY_LOCK",
        "PG_TRY_ADVISORY_LOCK",
        "CREATE TEMP",
        "CREATE LOCAL TEMP",
        "CREATE GLOBAL TEMP",
        "WITH HOLD",
        "PREPARE ",
        "SESSION AUTHORIZATION",
        "SET ROLE",
    ] {
        assert!(!sql.contains(forbidden), "{forbidden}");
    }
    // A cursor ends with its transaction, and a connection never returns to the pool
    // inside one (see `conn`); one held past its transaction would be session state.
    for (i, _) in sql.match_indices("DECLARE ") {
        let declaration = &sql[i..i + sql[i..].find(" FOR").expect("declaration ends")];
        assert!(declaration.ends_with("WITHOUT HOLD"), "a cursor that may outlive: {declaration}");
    }
    // The check sees what it must refuse.
    assert!(LEAVE_SESSION_STATE.contains("SET application_name"));
}

#[test]
fn with_the_tail_the_index_is_on_the_graph_table_and_searches_read_both_parts() {
    let ddl = create_vector_index(&schema(), 384, Metric::Cosine, true).expect("indexed");
    assert!(ddl.contains(&format!("ON {}.resource_vectors USING hnsw", schema())), "{ddl}");
    let search =
        search_with_tail(&schema(), 384, Metric::Cosine, Layout::Unit, true, TailOrder::Cells);
    // The graph part orders by the indexed expression and keeps entries matching their record.
    assert!(search.contains("ORDER BY (l2_normalize(embedding)::halfvec(384) <#>"), "{search}");
    assert!(
        search.contains("SELECT r.embedding = resource_vectors.embedding AND r.metadata @> $3")
    );
    // A filtered tail part is exact whatever the order asked; both in one statement.
    assert!(search.contains("UNION ALL"), "{search}");
    // A filtered graph part returns more candidates than `k`, for the caller to re-rank.
    assert!(search.contains("LIMIT $4"), "{search}");
    assert!(search.contains("COALESCE(NULLIF(t.embedding <=> $1::vector"), "{search}");
    assert!(search.contains("false AS from_tail") && search.contains("true AS from_tail"));
    let function =
        create_search_function(&schema(), 384, Metric::Cosine, "app", true).expect("indexed");
    let unfiltered =
        search_with_tail(&schema(), 384, Metric::Cosine, Layout::Unit, false, TailOrder::Exact);
    assert!(function.contains(&format!("RETURN QUERY {unfiltered};")), "{function}");
    // Read through the tail index, the tail part orders by the graph's indexed expression.
    let cells =
        search_with_tail(&schema(), 384, Metric::Cosine, Layout::Unit, false, TailOrder::Cells);
    assert_eq!(cells.matches("ORDER BY (l2_normalize(embedding)::halfvec(384) <#>").count(), 2);
    let ddl = create_tail_index(&schema(), 384, Metric::Cosine, 5.0).expect("indexed");
    assert!(ddl.contains("USING ivfflat ((l2_normalize(embedding)::halfvec(384)) halfvec_ip_ops)"));
    assert!(ddl.contains("TABLESAMPLE SYSTEM (5.0000)"), "{ddl}");
    assert!(create_tail_index(&schema(), 5000, Metric::Cosine, 5.0).is_none());
}

#[test]
fn a_merge_moves_tail_rows_in_one_statement_and_never_writes_resources() {
    let merge = merge_tail(&schema());
    assert!(merge.contains("FOR UPDATE SKIP LOCKED"), "{merge}");
    assert!(!merge.contains(".resources"), "{merge}");
    assert_eq!(merge.matches(';').count(), 0, "one statement: {merge}");
}

#[test]
fn session_clean_is_deadpools_clean_recycling() {
    let clean = deadpool_postgres::RecyclingMethod::Clean;
    assert_eq!(clean.query(), Some(SESSION_CLEAN));
}
