//! TLS to a real server (issue 23, item 9): every `sslmode` against the server of
//! `scripts/with-postgres.sh`, with certificates made here.
//!
//! Once per run the tests make a certificate authority and a server certificate for
//! `127.0.0.1` (rcgen), install them in the server's data directory, turn `ssl` on, and add a
//! role `percolate_tls` that `pg_hba.conf` admits only over TLS (`hostssl`, and a `hostnossl`
//! line that rejects it), all as the bootstrap superuser, then reload the configuration. That
//! changes the server for whatever runs after, and needs a server built with SSL (the wheel's
//! is not; `PERCOLATE_PG_TLS=1` makes the script run Debian's), so this suite runs in a
//! `with-postgres.sh` invocation of its own:
//!
//! ```sh
//! PERCOLATE_PG_TLS=1 bash scripts/with-postgres.sh \
//!     cargo test --release --features postgres --test postgres_tls
//! ```
//!
//! Without the server's environment every test fails rather than skips.
#![cfg(feature = "postgres")]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use percolate::postgres::{PgConfig, PgProvider, PgSslMode};
use percolate::{Error, MemoryEngine};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

const ROLE: &str = "percolate_tls";
const PASSWORD: &str = "tls-secret";
/// Marks the lines this suite adds to `pg_hba.conf`, so a second run adds none.
const HBA_MARK: &str = "# percolate tls tests";

fn env(variable: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| {
        panic!(
            "{variable} is not set: run these tests through scripts/with-postgres.sh (e.g. \
             PERCOLATE_PG_TLS=1 bash scripts/with-postgres.sh cargo test --release --features \
             postgres --test postgres_tls)"
        )
    })
}

/// The server with TLS on, and the certificate authorities the tests trust.
struct Fixture {
    port: u16,
    /// The PEM files `ca.pem` (which signed the server's certificate) and `other-ca.pem`.
    certificates: PathBuf,
}

impl Fixture {
    /// The TLS role's URL to `host` with the query `query`.
    fn url(&self, host: &str, query: &str) -> String {
        format!("postgres://{ROLE}:{PASSWORD}@{host}:{}/percolate?{query}", self.port)
    }

    fn ca(&self) -> String {
        self.certificates.join("ca.pem").display().to_string()
    }

    fn other_ca(&self) -> String {
        self.certificates.join("other-ca.pem").display().to_string()
    }
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        // Its own runtime on its own thread: the superuser connection must outlive the test
        // that happens to set the server up.
        std::thread::spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(set_up())
        })
        .join()
        .expect("the tls set-up failed")
    })
}

async fn superuser() -> tokio_postgres::Client {
    let url = env("PERCOLATE_TEST_POSTGRES_SUPERUSER_URL");
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("superuser connect: {e}"));
    tokio::spawn(connection);
    client
}

async fn show(client: &tokio_postgres::Client, setting: &str) -> String {
    let row = client.query_one(&format!("SHOW {setting}"), &[]).await.expect("show");
    row.get(0)
}

/// A certificate authority of its own name.
fn authority(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("ca")
}

/// Writes `text` to `path` for the server's user (the owner of the data directory), readable
/// by it alone: PostgreSQL refuses a key file others can read.
fn write_for_server(path: &Path, text: &str, owner: &std::fs::Metadata) {
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    std::os::unix::fs::chown(path, Some(owner.uid()), Some(owner.gid())).expect("chown");
}

async fn set_up() -> Fixture {
    let app: tokio_postgres::Config =
        env("PERCOLATE_TEST_POSTGRES_URL").parse().expect("application url");
    let port = app.get_ports().first().copied().expect("a port");
    let client = superuser().await;

    // The certificates: the server's for 127.0.0.1 and localhost, signed by `ca`; another
    // authority for the test of a wrong one.
    let ca = authority("percolate test ca");
    let other = authority("percolate other ca");
    let key = KeyPair::generate().expect("server key");
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("server params");
    params.distinguished_name.push(DnType::CommonName, "percolate test server");
    let server = params.signed_by(&key, &ca).expect("server certificate");
    let certificates = std::env::temp_dir().join(format!("percolate-tls-{}", std::process::id()));
    std::fs::create_dir_all(&certificates).expect("certificate directory");
    std::fs::write(certificates.join("ca.pem"), ca.pem()).expect("ca");
    std::fs::write(certificates.join("other-ca.pem"), other.pem()).expect("other ca");

    let data = PathBuf::from(show(&client, "data_directory").await);
    let owner = std::fs::metadata(&data).expect("data directory");
    let (cert_file, key_file) = (data.join("percolate-test.crt"), data.join("percolate-test.key"));
    write_for_server(&cert_file, &server.pem(), &owner);
    write_for_server(&key_file, &key.serialize_pem(), &owner);

    // `ALTER SYSTEM` cannot run in a transaction block: one statement at a time. The paths
    // are the data directory's, which the server chose; quotes are doubled all the same.
    let quoted = |path: &Path| format!("'{}'", path.display().to_string().replace('\'', "''"));
    for statement in [
        format!("ALTER SYSTEM SET ssl_cert_file = {}", quoted(&cert_file)),
        format!("ALTER SYSTEM SET ssl_key_file = {}", quoted(&key_file)),
        "ALTER SYSTEM SET ssl = on".to_owned(),
    ] {
        client.batch_execute(&statement).await.unwrap_or_else(|e| panic!("{statement}: {e:?}"));
    }
    client
        .batch_execute(&format!(
            "DO $$ BEGIN
                 IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = '{ROLE}') THEN
                     CREATE ROLE {ROLE} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
                 END IF;
             END $$;
             ALTER ROLE {ROLE} PASSWORD '{PASSWORD}';
             GRANT CONNECT ON DATABASE percolate TO {ROLE};
             GRANT USAGE ON SCHEMA public TO {ROLE};"
        ))
        .await
        .expect("tls role");
    let hba = PathBuf::from(show(&client, "hba_file").await);
    let lines = std::fs::read_to_string(&hba).expect("pg_hba.conf");
    if !lines.contains(HBA_MARK) {
        // First match wins: over TLS with a password, and never without TLS.
        let ours = format!(
            "{HBA_MARK}: {ROLE} only over TLS\n\
             hostssl percolate {ROLE} 127.0.0.1/32 scram-sha-256\n\
             hostnossl all {ROLE} all reject\n"
        );
        std::fs::write(&hba, format!("{ours}{lines}")).expect("write pg_hba.conf");
    }
    client.batch_execute("SELECT pg_reload_conf()").await.expect("reload");
    // The postmaster reloads when it handles the signal; new sessions then see it.
    for _ in 0..100 {
        if show(&superuser().await, "ssl").await == "on" {
            return Fixture { port, certificates };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("ssl is still off 10 s after the reload: {}", data.display());
}

fn config(url: String) -> PgConfig {
    PgConfig::new(url).with_admin_url(env("PERCOLATE_TEST_POSTGRES_ADMIN_URL")).with_pool_size(2)
}

/// The error's message and every cause's, for asserting on what a user would read.
fn chain(error: &Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(&format!(" | {cause}"));
        source = cause.source();
    }
    text
}

async fn refused(config: PgConfig) -> String {
    match PgProvider::connect(config).await {
        Ok(_) => panic!("connected where it must be refused"),
        Err(error) => {
            let text = chain(&error);
            assert!(matches!(error, Error::Backend { .. }), "{text}");
            assert!(!text.contains(PASSWORD), "the password leaked: {text}");
            text
        }
    }
}

/// Reads the tenant registry through `provider`'s application pool (the TLS role), and checks
/// on the server that every session of that role is encrypted. (The TLS server has no
/// pgvector, so no tenant is made.)
async fn works_encrypted(provider: PgProvider) {
    assert_eq!(provider.app_role(), ROLE);
    let engine = MemoryEngine::new(provider);
    engine.list_tenants().await.expect("a query over tls");
    let row = superuser()
        .await
        .query_one(
            "SELECT count(*), coalesce(bool_and(s.ssl), false) FROM pg_catalog.pg_stat_ssl s
             JOIN pg_catalog.pg_stat_activity a USING (pid) WHERE a.usename = $1",
            &[&ROLE],
        )
        .await
        .expect("pg_stat_ssl");
    let (sessions, encrypted): (i64, bool) = (row.get(0), row.get(1));
    assert!(sessions >= 1 && encrypted, "{sessions} sessions, all encrypted: {encrypted}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_connects_to_a_server_whose_certificate_names_it_and_is_signed_by_the_ca() {
    let f = fixture();
    let url = f.url("127.0.0.1", &format!("sslmode=verify-full&sslrootcert={}", f.ca()));
    works_encrypted(PgProvider::connect(config(url)).await.expect("verify-full")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_give_the_mode_and_the_root_certificate_as_the_url_does() {
    let f = fixture();
    let config = config(f.url("127.0.0.1", "application_name=percolate-tls"))
        .with_ssl_mode(PgSslMode::VerifyFull)
        .with_ssl_root_cert(f.ca());
    works_encrypted(PgProvider::connect(config).await.expect("verify-full")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_signed_by_another_authority_is_refused_with_a_clear_error() {
    let f = fixture();
    let url = f.url("127.0.0.1", &format!("sslmode=verify-full&sslrootcert={}", f.other_ca()));
    let text = refused(config(url)).await;
    assert!(
        text.contains("not signed by a trusted certificate authority")
            && text.contains(&format!("sslmode=verify-full, sslrootcert={}", f.other_ca())),
        "{text}"
    );
    // `require` with a root certificate checks the authority, as libpq does.
    let url = f.url("127.0.0.1", &format!("sslmode=require&sslrootcert={}", f.other_ca()));
    assert!(refused(config(url)).await.contains("not signed by a trusted"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_refuses_a_certificate_for_another_host_and_verify_ca_accepts_it() {
    let f = fixture();
    // Reached at 127.0.0.1, but by a name the certificate does not carry.
    let query = |mode: &str| format!("hostaddr=127.0.0.1&sslmode={mode}&sslrootcert={}", f.ca());
    let text = refused(config(f.url("db.invalid", &query("verify-full")))).await;
    assert!(text.contains("does not name the host"), "{text}");
    let provider = PgProvider::connect(config(f.url("db.invalid", &query("verify-ca"))))
        .await
        .expect("verify-ca checks the authority only");
    works_encrypted(provider).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_and_the_loopback_default_encrypt_without_checking_the_certificate() {
    let f = fixture();
    // The test authority is in no store the provider trusts by default: these modes do not
    // check it, and the role is admitted only over TLS.
    let provider =
        PgProvider::connect(config(f.url("127.0.0.1", "sslmode=require"))).await.expect("require");
    works_encrypted(provider).await;
    let provider = PgProvider::connect(config(f.url("127.0.0.1", "application_name=default")))
        .await
        .expect("prefer on loopback");
    works_encrypted(provider).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_against_a_server_that_requires_tls_fails_clearly() {
    let f = fixture();
    let text = refused(config(f.url("127.0.0.1", "sslmode=disable"))).await;
    assert!(
        text.contains("accepts this role only over tls, which sslmode=disable forbids"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_and_settings_that_disagree_on_the_mode_are_invalid() {
    let f = fixture();
    let config = config(f.url("127.0.0.1", "sslmode=disable")).with_ssl_mode(PgSslMode::VerifyFull);
    let error = PgProvider::connect(config).await.err().expect("disagreement");
    assert!(matches!(error, Error::Invalid { .. }), "{error}");
    assert!(error.to_string().contains("sslmode=disable"), "{error}");
}
