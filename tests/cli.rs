//! The `percolate` binary, run for real against a temporary RocksDB directory.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

struct Cli {
    dir: tempfile::TempDir,
}

struct Run {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.stdout).unwrap_or_else(|e| {
            panic!("stdout is not JSON ({e}): {}", String::from_utf8_lossy(&self.stdout))
        })
    }

    fn ok(self) -> Self {
        assert_eq!(self.code, 0, "stderr: {}", self.stderr);
        self
    }
}

impl Cli {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().expect("temp dir") }
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("db")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_percolate"));
        command.args(args).current_dir(self.dir.path());
        for key in [
            "PERCOLATE_STORAGE_PROVIDER",
            "PERCOLATE_POSTGRES_URL",
            "PERCOLATE_POSTGRES_ADMIN_URL",
            "PERCOLATE_POSTGRES_POOL_SIZE",
            "PERCOLATE_CONFIG",
            "PERCOLATE_MASTER_KEY",
            "PERCOLATE_MASTER_KEY_FILE",
        ] {
            command.env_remove(key);
        }
        command.env("PERCOLATE_ROCKSDB_PATH", self.db());
        command
    }

    fn run_with(&self, mut command: Command, stdin: &[u8]) -> Run {
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn percolate");
        let mut input = child.stdin.take().expect("stdin");
        let bytes = stdin.to_vec();
        let writer = std::thread::spawn(move || {
            // The command may exit before reading everything (bad input): ignore EPIPE.
            let _ = input.write_all(&bytes);
        });
        let output = child.wait_with_output().expect("wait");
        let _ = writer.join();
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: output.stdout,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    fn run(&self, args: &[&str], stdin: &str) -> Run {
        self.run_with(self.command(args), stdin.as_bytes())
    }

    fn put(&self, kind: &str, record: Value) -> Value {
        self.run(&["put", kind, "--tenant", "acme"], &record.to_string()).ok().json()
    }
}

fn id(value: &Value) -> String {
    value["id"].as_str().expect("id").to_owned()
}

/// A tenant `acme` with two resources, three entities in a chain, and a moment.
fn populated() -> (Cli, Vec<String>, Vec<String>) {
    let cli = Cli::new();
    cli.run(&["tenant", "create", "acme"], "").ok();
    let resources = cli
        .run(
            &["put", "resource", "--tenant", "acme"],
            &json!([
                {"content": "met Ada at the lab", "embedding": [0.1, 0.9, 0.0], "metadata": {"lang": "en"}},
                {"content": "rencontre", "embedding": [0.9, 0.1, 0.0], "metadata": {"lang": "fr"}, "uri": "file:///x"}
            ])
            .to_string(),
        )
        .ok()
        .json();
    let resources: Vec<String> = resources.as_array().expect("array").iter().map(id).collect();
    let ada = cli.put("entity", json!({"name": "Ada Lovelace", "kind": "person"}));
    let lab =
        cli.put("entity", json!({"name": "The Lab", "kind": "place", "properties": {"floor": 2}}));
    let city = cli.put("entity", json!({"name": "London", "kind": "place"}));
    let entities = vec![id(&ada), id(&lab), id(&city)];
    cli.put("edge", json!({"from": entities[0], "to": entities[1], "relation": "works_at"}));
    cli.put(
        "edge",
        json!({"from": entities[1], "to": entities[2], "relation": "in", "weight": 0.5}),
    );
    cli.put(
        "moment",
        json!({"start": "2025-01-01T10:00:00Z", "end": "2025-01-01T11:00:00Z", "kind": "meeting",
               "content": "standup", "entities": [entities[0]]}),
    );
    (cli, resources, entities)
}

#[test]
fn tenants_are_created_listed_and_deleted_with_only_the_rocksdb_path_set() {
    let cli = Cli::new();
    let created = cli.run(&["tenant", "create", "acme"], "").ok().json();
    assert_eq!(created["tenant"], "acme");
    assert!(cli.db().join("acme").is_dir(), "the store lives at PERCOLATE_ROCKSDB_PATH");
    cli.run(&["tenant", "create", "beta", "--dimension", "3", "--metric", "l2"], "").ok();
    assert_eq!(cli.run(&["tenant", "list"], "").ok().json(), json!(["acme", "beta"]));
    let table = cli.run(&["--output", "table", "tenant", "list"], "").ok();
    assert_eq!(String::from_utf8_lossy(&table.stdout), "tenant\nacme\nbeta\n");
    cli.run(&["tenant", "delete", "beta"], "").ok();
    assert_eq!(cli.run(&["tenant", "list"], "").ok().json(), json!(["acme"]));
}

#[test]
fn every_kind_is_put_got_and_deleted() {
    let (cli, resources, entities) = populated();
    let got = cli.run(&["get", "resource", "--tenant", "acme", &resources[1]], "").ok().json();
    assert_eq!(got["content"], "rencontre");
    assert_eq!(got["uri"], "file:///x");
    assert_eq!(got["embedding"], json!([0.9, 0.1, 0.0]));
    let got = cli.run(&["get", "entity", "--tenant", "acme", &entities[1]], "").ok().json();
    assert_eq!(got["properties"], json!({"floor": 2}));

    let edges = cli.run(&["traverse", "--tenant", "acme", &entities[0], "--depth", "1"], "").ok();
    assert_eq!(edges.json().as_array().map(Vec::len), Some(1));

    // An edge and a moment by id.
    let edge =
        cli.put("edge", json!({"from": entities[2], "to": entities[0], "relation": "home_of"}));
    let got = cli.run(&["get", "edge", "--tenant", "acme", &id(&edge)], "").ok().json();
    assert_eq!(got, edge);
    let moment = cli.put(
        "moment",
        json!({"start": "2025-02-01T00:00:00Z", "end": "2025-02-01T00:00:00Z", "kind": "note"}),
    );
    let got = cli.run(&["get", "moment", "--tenant", "acme", &id(&moment)], "").ok().json();
    assert_eq!(got, moment);

    for (kind, record) in [
        ("edge", id(&edge)),
        ("moment", id(&moment)),
        ("resource", resources[0].clone()),
        ("entity", entities[2].clone()),
    ] {
        let deleted = cli.run(&["delete", kind, "--tenant", "acme", &record], "").ok().json();
        assert_eq!(deleted, json!({"deleted": kind, "id": record}));
        let missing = cli.run(&["get", kind, "--tenant", "acme", &record], "");
        assert_eq!(missing.code, 3, "{kind} should be gone: {}", missing.stderr);
    }
}

#[test]
fn recall_fuses_text_and_vector_and_reports_each_rank() {
    let (cli, resources, _) = populated();
    let text = cli.run(&["recall", "--tenant", "acme", "--text", "the labs", "--k", "5"], "");
    let hits = text.ok().json();
    assert_eq!(hits.as_array().map(Vec::len), Some(1), "{hits}");
    assert_eq!(hits[0]["resource"]["id"], resources[0].as_str());
    assert_eq!(hits[0]["ranks"], json!({"text": 1, "vector": null}));

    // Resource 0 is first by text and second by vector; resource 1 first by vector only.
    std::fs::write(cli.dir.path().join("q.json"), "[0.9, 0.1, 0.0]").expect("write");
    let fused = cli
        .run(&["recall", "--tenant", "acme", "--text", "lab", "--vector-file", "q.json"], "")
        .ok()
        .json();
    assert_eq!(fused[0]["resource"]["id"], resources[0].as_str());
    assert_eq!(fused[0]["ranks"], json!({"text": 1, "vector": 2}));
    assert_eq!(fused[1]["resource"]["id"], resources[1].as_str());
    assert_eq!(fused[1]["ranks"], json!({"text": null, "vector": 1}));
    let (first, second) = (fused[0]["score"].as_f64(), fused[1]["score"].as_f64());
    assert_eq!(first, Some(1.0 / 61.0 + 1.0 / 62.0));
    assert_eq!(second, Some(1.0 / 61.0));

    let future = ["recall", "--tenant", "acme", "--text", "lab", "--since", "2999-01-01T00:00:00Z"];
    assert_eq!(cli.run(&future, "").ok().json(), json!([]));
    let filtered =
        ["recall", "--tenant", "acme", "--vector-file", "q.json", "--filter", r#"{"lang": "en"}"#];
    let hits = cli.run(&filtered, "").ok().json();
    assert_eq!(hits.as_array().map(Vec::len), Some(1));
    assert_eq!(hits[0]["resource"]["id"], resources[0].as_str());
    assert_eq!(cli.run(&["recall", "--tenant", "acme"], "").code, 2, "no signal is bad input");
}

#[test]
fn search_traverse_and_moments_answer() {
    let (cli, resources, entities) = populated();
    let hits = cli
        .run(&["search", "--tenant", "acme", "--vector", "[0.2, 0.8, 0.0]", "--k", "2"], "")
        .ok()
        .json();
    assert_eq!(hits[0]["resource"]["id"], resources[0].as_str());
    assert_eq!(hits[1]["resource"]["id"], resources[1].as_str());
    assert!(hits[0]["resource"].get("embedding").is_none(), "embeddings only on request");

    std::fs::write(cli.dir.path().join("q.json"), "[0.2, 0.8, 0.0]").expect("write");
    let filtered = cli
        .run(
            &[
                "search",
                "--tenant",
                "acme",
                "--vector-file",
                "q.json",
                "--filter",
                r#"{"lang": "fr"}"#,
                "--embeddings",
            ],
            "",
        )
        .ok()
        .json();
    assert_eq!(filtered.as_array().map(Vec::len), Some(1));
    assert_eq!(filtered[0]["resource"]["id"], resources[1].as_str());
    assert_eq!(filtered[0]["resource"]["embedding"], json!([0.9, 0.1, 0.0]));

    let reached =
        cli.run(&["traverse", "--tenant", "acme", &entities[0], "--depth", "3"], "").ok().json();
    assert_eq!(
        reached,
        json!([{"entity": entities[1], "depth": 1}, {"entity": entities[2], "depth": 2}])
    );
    let inbound = cli
        .run(
            &["traverse", "--tenant", "acme", &entities[2], "--depth", "3", "--direction", "in"],
            "",
        )
        .ok()
        .json();
    assert_eq!(inbound.as_array().map(Vec::len), Some(2));
    let table = cli
        .run(&["-o", "table", "traverse", "--tenant", "acme", &entities[0], "--depth", "3"], "")
        .ok();
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    assert!(
        table.starts_with("depth") && table.contains("The Lab") && table.contains("London"),
        "{table}"
    );

    let moments = cli
        .run(
            &[
                "moments",
                "--tenant",
                "acme",
                "--from",
                "2025-01-01T11:00:00Z",
                "--to",
                "2025-01-02T00:00:00Z",
            ],
            "",
        )
        .ok()
        .json();
    assert_eq!(moments.as_array().map(Vec::len), Some(1), "a range touching the end overlaps");
    let none =
        cli.run(&["moments", "--tenant", "acme", "--from", "2025-01-02T00:00:00Z"], "").ok().json();
    assert_eq!(none, json!([]));
}

#[test]
fn export_and_import_round_trip_through_pipes_and_files() {
    let (cli, _, entities) = populated();
    let exported = cli.run(&["export", "--tenant", "acme"], "").ok().stdout;
    let text = String::from_utf8(exported.clone()).expect("utf-8");
    assert_eq!(text.lines().count(), 1 + 2 + 3 + 2 + 1 + 1);

    // Into a second store through stdin: same tenant name, so the export is the same bytes.
    let other = Cli::new();
    let summary = other.run_with(other.command(&["import"]), &exported).ok().json();
    assert_eq!(summary["tenant"], "acme");
    assert_eq!(
        summary["inserted"],
        json!({"resources": 2, "entities": 3, "edges": 2, "moments": 1})
    );
    let again = other.run(&["export", "--tenant", "acme"], "").ok().stdout;
    assert_eq!(String::from_utf8_lossy(&again), text);
    let reached = other.run(&["traverse", "--tenant", "acme", &entities[0]], "").ok().json();
    assert_eq!(reached.as_array().map(Vec::len), Some(2));

    // Again from a file: idempotent, everything skipped.
    let out = cli.dir.path().join("acme.jsonl");
    let written = cli.run(&["export", "--tenant", "acme", "--out", "acme.jsonl"], "").ok().json();
    assert_eq!(written["trailer"]["records"], 8);
    assert_eq!(std::fs::read(&out).expect("read"), exported);
    let path = out.to_string_lossy().into_owned();
    let summary = other.run(&["import", "--in", &path], "").ok().json();
    assert_eq!(
        summary["inserted"],
        json!({"resources": 0, "entities": 0, "edges": 0, "moments": 0})
    );
    assert_eq!(summary["skipped"]["entities"], 3);
    // Under another name.
    let summary = other.run(&["import", "--tenant", "copy", "--in", &path], "").ok().json();
    assert_eq!(summary["created_tenant"], true);
    let checked = other.run(&["import", "--check", "--in", &path], "").ok().json();
    assert_eq!(checked["valid"], true);
}

#[test]
fn corrupt_imports_exit_2_and_write_nothing() {
    let (cli, _, _) = populated();
    let exported = cli.run(&["export", "--tenant", "acme"], "").ok().stdout;
    let other = Cli::new();
    let truncated = other.run_with(other.command(&["import"]), &exported[..exported.len() - 30]);
    assert_eq!(truncated.code, 2, "{}", truncated.stderr);
    assert!(truncated.stderr.contains("line "), "{}", truncated.stderr);
    let tampered = String::from_utf8(exported).expect("utf-8").replacen("standup", "standby", 1);
    let tampered = other.run_with(other.command(&["import"]), tampered.as_bytes());
    assert_eq!(tampered.code, 2, "{}", tampered.stderr);
    assert!(tampered.stderr.contains("checksum mismatch"), "{}", tampered.stderr);
    assert_eq!(other.run(&["tenant", "list"], "").ok().json(), json!([]));
}

#[test]
fn arrays_of_entities_edges_and_moments_are_stored_whole_or_not_at_all() {
    let (cli, _, entities) = populated();
    let reached = |cli: &Cli| {
        let out = cli.run(&["traverse", "--tenant", "acme", &entities[0], "--depth", "1"], "");
        out.ok().json().as_array().map(Vec::len)
    };
    let all_moments = |cli: &Cli| {
        cli.run(&["moments", "--tenant", "acme"], "").ok().json().as_array().map(Vec::len)
    };
    let missing = "0197a000-0000-7000-8000-000000000000";
    let bad_edges = json!([
        {"from": entities[0], "to": entities[2], "relation": "knows"},
        {"from": entities[0], "to": missing, "relation": "knows"}
    ]);
    let failed = cli.run(&["put", "edge", "--tenant", "acme"], &bad_edges.to_string());
    assert_ne!(failed.code, 0, "an edge to a missing entity fails the array");
    assert_eq!(reached(&cli), Some(1), "no edge of the failed array was written");
    let good_edges = json!([
        {"from": entities[0], "to": entities[2], "relation": "knows"},
        {"from": entities[2], "to": entities[0], "relation": "knows"}
    ]);
    let stored = cli.put("edge", good_edges);
    assert_eq!(stored.as_array().map(Vec::len), Some(2));
    assert_eq!(reached(&cli), Some(2), "both edges of the array");

    let bad_moments = json!([
        {"start": "2025-02-01T10:00:00Z", "end": "2025-02-01T11:00:00Z", "kind": "m"},
        {"start": "2025-02-01T10:00:00Z", "end": "2025-02-01T09:00:00Z", "kind": "m"}
    ]);
    let failed = cli.run(&["put", "moment", "--tenant", "acme"], &bad_moments.to_string());
    assert_eq!(failed.code, 2, "{}", failed.stderr);
    assert!(failed.stderr.contains("at index 1"), "{}", failed.stderr);
    assert_eq!(all_moments(&cli), Some(1), "no moment of the failed array was written");
    let bad_entities = json!([{"name": "Grace", "kind": "person"}, {"name": "", "kind": "person"}]);
    let failed = cli.run(&["put", "entity", "--tenant", "acme"], &bad_entities.to_string());
    assert_eq!(failed.code, 2, "{}", failed.stderr);
    let export = cli.run(&["export", "--tenant", "acme"], "").ok();
    let export = String::from_utf8_lossy(&export.stdout);
    assert!(!export.contains("Grace"), "no entity of the failed array was written");
}

#[test]
fn bad_input_exits_2_and_storage_failure_exits_1() {
    let (cli, _, entities) = populated();
    let cases: &[(&[&str], &str, i32)] = &[
        (&["put", "resource", "--tenant", "acme"], "{not json", 2),
        (&["put", "resource", "--tenant", "acme"], r#"{"contnet": "typo"}"#, 2),
        (&["put", "resource", "--tenant", "acme"], r#"{"id": "x", "content": "c"}"#, 2),
        (&["put", "resource", "--tenant", "acme"], r#"{"content": "c", "embedding": [1, 2]}"#, 2),
        (&["put", "entity", "--tenant", "acme"], r#"{"name": "", "kind": "person"}"#, 2),
        (&["put", "entity", "--tenant", "acme"], "[]", 2),
        (
            &["put", "moment", "--tenant", "acme"],
            r#"{"start": "yesterday", "end": "2025-01-01T00:00:00Z", "kind": "k"}"#,
            2,
        ),
        (&["get", "entity", "--tenant", "acme", "not-a-uuid"], "", 2),
        (
            &["get", "entity", "--tenant", "Bad Tenant!", "0197a000-0000-7000-8000-000000000000"],
            "",
            2,
        ),
        (&["search", "--tenant", "acme", "--vector", "[1, 2]"], "", 2),
        (&["search", "--tenant", "acme", "--vector", "nope"], "", 2),
        (
            &["search", "--tenant", "acme", "--vector", "[1, 0, 0]", "--filter", "{\"$bogus\": 1}"],
            "",
            2,
        ),
        (&["traverse", "--tenant", "acme", &entities[0], "--depth", "0"], "", 2),
        (&["traverse", "--tenant", "acme", &entities[0], "--direction", "sideways"], "", 2),
        (
            &[
                "moments",
                "--tenant",
                "acme",
                "--from",
                "2025-02-01T00:00:00Z",
                "--to",
                "2025-01-01T00:00:00Z",
            ],
            "",
            2,
        ),
        (&["import", "--in", "/nonexistent/file.jsonl"], "", 2),
        (&["frobnicate"], "", 2),
        (&["get", "entity", "--tenant", "acme", "0197a000-0000-7000-8000-000000000000"], "", 3),
        (&["get", "entity", "--tenant", "nobody", "0197a000-0000-7000-8000-000000000000"], "", 3),
        (&["tenant", "create", "acme"], "", 4),
    ];
    for (args, stdin, code) in cases {
        let run = cli.run(args, stdin);
        assert_eq!(run.code, *code, "percolate {args:?} < {stdin:?}: {}", run.stderr);
        assert!(run.stderr.starts_with("error") || *args == ["frobnicate"], "{}", run.stderr);
    }
    // An edge to a missing entity: a record id that does not exist is not found.
    let run = cli.run(
        &["put", "edge", "--tenant", "acme"],
        &json!({"from": entities[0], "to": "0197a000-0000-7000-8000-000000000000", "relation": "r"})
            .to_string(),
    );
    assert_eq!(run.code, 3, "{}", run.stderr);

    // Storage failure: the RocksDB root is a regular file.
    let file = cli.dir.path().join("not-a-dir");
    std::fs::write(&file, "x").expect("write");
    let mut command = cli.command(&["tenant", "list"]);
    command.env("PERCOLATE_ROCKSDB_PATH", &file);
    let run = cli.run_with(command, b"");
    assert_eq!(run.code, 1, "{}", run.stderr);
}

#[test]
fn settings_come_from_the_config_file_with_env_winning() {
    let cli = Cli::new();
    let from_file = cli.dir.path().join("from-file");
    let config = cli.dir.path().join("percolate.toml");
    std::fs::write(
        &config,
        format!("rocksdb_path = {:?}\npostgres_pool_size = 4\n", from_file.to_string_lossy()),
    )
    .expect("write");
    let config = config.to_string_lossy().into_owned();

    // The environment wins over the file.
    cli.run(&["--config", &config, "tenant", "create", "acme"], "").ok();
    assert!(cli.db().join("acme").is_dir());
    assert!(!from_file.exists());

    // Without the variable, the file decides.
    let mut command = cli.command(&["--config", &config, "tenant", "create", "beta"]);
    command.env_remove("PERCOLATE_ROCKSDB_PATH");
    cli.run_with(command, b"").ok();
    assert!(from_file.join("beta").is_dir());

    // A missing file, a bad value, an unknown provider: bad input.
    let run = cli.run(&["--config", "/nonexistent.toml", "tenant", "list"], "");
    assert_eq!(run.code, 2, "{}", run.stderr);
    let mut command = cli.command(&["tenant", "list"]);
    command.env("PERCOLATE_POSTGRES_POOL_SIZE", "many");
    let run = cli.run_with(command, b"");
    assert_eq!(run.code, 2, "{}", run.stderr);
    let mut command = cli.command(&["tenant", "list"]);
    command.env("PERCOLATE_STORAGE_PROVIDER", "mysql");
    let run = cli.run_with(command, b"");
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("mysql"), "{}", run.stderr);
}

#[test]
fn choosing_postgres_names_what_is_missing() {
    let cli = Cli::new();
    let mut command = cli.command(&["tenant", "list"]);
    command.env("PERCOLATE_STORAGE_PROVIDER", "postgres");
    let run = cli.run_with(command, b"");
    assert_eq!(run.code, 2, "{}", run.stderr);
    if cfg!(feature = "postgres") {
        assert!(run.stderr.contains("PERCOLATE_POSTGRES_URL"), "{}", run.stderr);
    } else {
        assert!(run.stderr.contains("--features postgres"), "{}", run.stderr);
    }
}

#[test]
fn migrate_moves_a_tenant_between_rocksdb_stores() {
    let (cli, _, _) = populated();
    let exported = cli.run(&["export", "--tenant", "acme"], "").ok().stdout;
    let to = cli.dir.path().join("elsewhere");
    let spec = format!("rocksdb:{}", to.display());
    let summary = cli
        .run(&["migrate", "--tenant", "acme", "--from", "rocksdb", "--to", &spec], "")
        .ok()
        .json();
    assert_eq!(summary["records"], 8);
    assert_eq!(summary["inserted"]["edges"], 2);
    let mut command = cli.command(&["export", "--tenant", "acme"]);
    command.env("PERCOLATE_ROCKSDB_PATH", &to);
    assert_eq!(cli.run_with(command, b"").ok().stdout, exported);
    // Within one store under a new name.
    cli.run(
        &["migrate", "--tenant", "acme", "--from", "rocksdb", "--to", "rocksdb", "--as", "copy"],
        "",
    )
    .ok();
    assert_eq!(cli.run(&["tenant", "list"], "").ok().json(), json!(["acme", "copy"]));
    let run = cli.run(&["migrate", "--tenant", "acme", "--from", "rocksdb", "--to", "rocksdb"], "");
    assert_eq!(run.code, 2, "{}", run.stderr);
    let run = cli.run(&["migrate", "--tenant", "acme", "--from", "mysql:x", "--to", "rocksdb"], "");
    assert_eq!(run.code, 2, "{}", run.stderr);
}

#[test]
fn output_is_quiet_when_piped() {
    let (cli, _, _) = populated();
    let run = cli.run(&["export", "--tenant", "acme", "--out", "x.jsonl"], "").ok();
    assert_eq!(run.stderr, "", "no progress bar on a pipe");
    let run = cli.run(&["import", "--tenant", "copy", "--in", "x.jsonl"], "").ok();
    assert_eq!(run.stderr, "");
}

#[test]
fn encryption_keys_come_from_a_key_file_or_the_environment() {
    let cli = Cli::new();
    let key_file = cli.dir.path().join("master.key");
    std::fs::write(&key_file, "a long and secret passphrase\n").expect("key file");
    let with_file = |args: &[&str], stdin: &str| {
        let mut command = cli.command(args);
        command.env("PERCOLATE_MASTER_KEY_FILE", &key_file);
        cli.run_with(command, stdin.as_bytes())
    };
    with_file(&["tenant", "create", "acme"], "").ok();
    assert!(cli.db().join("acme").join("percolate.key").is_file(), "the tenant is encrypted");
    let stored =
        with_file(&["put", "resource", "--tenant", "acme"], r#"{"content": "sealed note"}"#)
            .ok()
            .json();
    let got = with_file(&["get", "resource", "--tenant", "acme", &id(&stored)], "").ok().json();
    assert_eq!(got["content"], "sealed note");

    // The same passphrase given directly opens it too (the salt lives in the store).
    let mut command = cli.command(&["get", "resource", "--tenant", "acme", &id(&stored)]);
    command.env("PERCOLATE_MASTER_KEY", "a long and secret passphrase");
    assert_eq!(cli.run_with(command, b"").ok().json()["content"], "sealed note");

    let missing = cli.run(&["get", "resource", "--tenant", "acme", &id(&stored)], "");
    assert_ne!(missing.code, 0);
    assert!(missing.stderr.contains("no master key"), "stderr: {}", missing.stderr);
    let mut command = cli.command(&["get", "resource", "--tenant", "acme", &id(&stored)]);
    command.env("PERCOLATE_MASTER_KEY", "ab".repeat(32));
    let wrong = cli.run_with(command, b"");
    assert_ne!(wrong.code, 0);
    assert!(wrong.stderr.contains("different master key"), "stderr: {}", wrong.stderr);
    assert!(!wrong.stderr.contains("abab"), "the key is never printed: {}", wrong.stderr);
}

#[test]
fn rotate_key_rewraps_tenants_under_a_new_key() {
    let cli = Cli::new();
    let old_key = cli.dir.path().join("old.key");
    let new_key = cli.dir.path().join("new.key");
    std::fs::write(&old_key, "ab".repeat(32)).expect("old key");
    std::fs::write(&new_key, "the new passphrase").expect("new key");
    let with_key = |key: &std::path::Path, args: &[&str], stdin: &str| {
        let mut command = cli.command(args);
        command.env("PERCOLATE_MASTER_KEY_FILE", key);
        cli.run_with(command, stdin.as_bytes())
    };
    with_key(&old_key, &["tenant", "create", "acme"], "").ok();
    let stored = with_key(
        &old_key,
        &["put", "entity", "--tenant", "acme"],
        r#"{"name": "Ada", "kind": "p"}"#,
    )
    .ok()
    .json();
    let rotated = with_key(
        &old_key,
        &["rotate-key", "--new-key-file", new_key.to_str().expect("utf-8 path")],
        "",
    )
    .ok()
    .json();
    assert_eq!(rotated["rotated_tenants"], 1);
    let stale = with_key(&old_key, &["get", "entity", "--tenant", "acme", &id(&stored)], "");
    assert_eq!(stale.code, 7, "a key error has its own exit code: {}", stale.stderr);
    let got =
        with_key(&new_key, &["get", "entity", "--tenant", "acme", &id(&stored)], "").ok().json();
    assert_eq!(got["name"], "Ada");
    let without = cli.run(&["rotate-key", "--new-key-file", "new.key"], "");
    assert_eq!(without.code, 7, "no key to rotate from: {}", without.stderr);
}

/// Input never panics the binary: a demo of no resources is refused, and stored text that
/// holds terminal escape sequences is printed escaped in tables, never as control characters.
#[test]
fn hostile_input_is_refused_or_escaped_never_a_panic() {
    let cli = Cli::new();
    let demo = cli.run(&["demo", "--resources", "0"], "");
    assert_eq!(demo.code, 2, "stderr: {}", demo.stderr);
    assert!(demo.stderr.contains("--resources"), "{}", demo.stderr);
    assert!(!demo.stderr.contains("panicked"), "{}", demo.stderr);

    cli.run(&["tenant", "create", "acme"], "").ok();
    let hostile = "\u{1b}]0;owned\u{7}\u{1b}[2Jcleared";
    let record = json!({"content": hostile});
    let put = cli.put("resource", record);
    let table =
        cli.run(&["--output", "table", "get", "resource", "--tenant", "acme", &id(&put)], "");
    let table = table.ok();
    let printed = String::from_utf8_lossy(&table.stdout);
    assert!(!printed.contains('\u{1b}') && !printed.contains('\u{7}'), "{printed:?}");
    assert!(printed.contains("\\u{1b}[2Jcleared"), "{printed:?}");
}
