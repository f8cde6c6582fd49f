//! TLS to the server: which `sslmode` a pool connects with, which certificates it trusts, the
//! rustls configuration that enforces both, and what a failed handshake means in words.
//!
//! Design decisions:
//! - **libpq's modes, libpq's meaning.** `disable` never encrypts; `prefer` encrypts when the
//!   server offers TLS and falls back to plain text when it does not; `require` insists on TLS
//!   but, like libpq, checks no certificate, unless `sslrootcert` is given (then it is
//!   `verify-ca`, as in libpq); `verify-ca` checks that a trusted authority signed the server's
//!   certificate; `verify-full` also checks that the certificate names the host connected to.
//!   `prefer` and `require` without a root certificate protect against listening, not against
//!   a server in the middle.
//! - **The default depends on where the server is.** `verify-full` for any host that is not
//!   loopback: memory contents and credentials cross a network, and a managed server (RDS,
//!   Cloud SQL, Supabase, Neon) offers TLS anyway. `prefer` when every host is loopback (an
//!   address in 127.0.0.0/8 or `::1`, `localhost`, a Unix socket): nothing crosses a network,
//!   a local server usually has no certificate, and one that offers TLS is still used
//!   encrypted.
//! - **Trusted roots.** `sslrootcert=/path/ca.pem` trusts the certificates of that PEM file
//!   only; `sslrootcert=system`, or none, trusts the operating system's store (libpq reads
//!   `~/.postgresql/root.crt` by default; percolate reads no file it was not told of).
//! - **Where they are set.** `sslmode` and `sslrootcert` come from the connection URL (or
//!   key/value string) or from [`PgConfig`]; a value set in both places must agree, so a
//!   deployment never connects with a mode nobody meant. tokio-postgres knows neither
//!   `verify-ca`/`verify-full` nor `sslrootcert`, so both are taken out of the string before it
//!   parses the rest.
//! - **rustls with ring's primitives**, no OpenSSL: the cipher code is a maintained
//!   library's, and nothing here needs a C toolchain beyond what ring needs.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::PgConfig;
use crate::error::{Error, Result};

/// How a connection uses TLS: libpq's `sslmode` values (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PgSslMode {
    /// Plain text only.
    Disable,
    /// TLS when the server offers it, without checking its certificate; plain text otherwise.
    Prefer,
    /// TLS always, without checking the certificate (unless a root certificate is given: then
    /// as [`PgSslMode::VerifyCa`]).
    Require,
    /// TLS, and the server's certificate is signed by a trusted authority.
    VerifyCa,
    /// TLS, the certificate is signed by a trusted authority and names the host.
    VerifyFull,
}

impl PgSslMode {
    /// The libpq name: `disable`, `prefer`, `require`, `verify-ca` or `verify-full`.
    pub fn as_str(self) -> &'static str {
        match self {
            PgSslMode::Disable => "disable",
            PgSslMode::Prefer => "prefer",
            PgSslMode::Require => "require",
            PgSslMode::VerifyCa => "verify-ca",
            PgSslMode::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Display for PgSslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PgSslMode {
    type Err = Error;

    /// Parses a libpq name (`allow` is not supported: it tries plain text first).
    fn from_str(text: &str) -> Result<Self> {
        Ok(match text {
            "disable" => PgSslMode::Disable,
            "prefer" => PgSslMode::Prefer,
            "require" => PgSslMode::Require,
            "verify-ca" => PgSslMode::VerifyCa,
            "verify-full" => PgSslMode::VerifyFull,
            other => {
                return Err(Error::invalid(
                    "postgres sslmode",
                    format!("{other:?} (one of disable, prefer, require, verify-ca, verify-full)"),
                ));
            }
        })
    }
}

/// The `sslrootcert` value meaning the operating system's store.
const SYSTEM_ROOTS: &str = "system";

/// The TLS of one pool, resolved: what it enforces and how to say so in an error.
#[derive(Clone, Debug)]
pub(crate) struct TlsSummary {
    /// The mode in force.
    pub(crate) mode: PgSslMode,
    /// `sslmode=..., sslrootcert=...` as in force, for messages.
    pub(crate) described: String,
}

/// A parsed connection string, its TLS in force, and the connector that enforces it.
pub(super) struct Resolved {
    pub(super) config: tokio_postgres::Config,
    pub(super) summary: TlsSummary,
    pub(super) connector: MakeRustlsConnect,
}

/// Parses `url` (a URL or a key/value string), takes `sslmode` and `sslrootcert` out of it,
/// agrees them with `settings`, and builds the connector.
///
/// # Errors
/// [`Error::Invalid`] for a malformed string, an unknown mode, a value the string and the
/// settings disagree on, or root certificates that cannot be read.
pub(super) fn resolve(url: &str, settings: &PgConfig) -> Result<Resolved> {
    let extracted = extract(url)?;
    let mut config: tokio_postgres::Config =
        extracted.rest.parse().map_err(|e| Error::invalid("postgres url", e))?;
    let url_mode = extracted.mode.as_deref().map(PgSslMode::from_str).transpose()?;
    let mode = agree("sslmode", url_mode, settings.ssl_mode)?.unwrap_or_else(|| {
        if loopback_only(&config) { PgSslMode::Prefer } else { PgSslMode::VerifyFull }
    });
    let root = agree("sslrootcert", extracted.root_cert, settings.ssl_root_cert.clone())?;
    // libpq: `require` with a root certificate checks the authority.
    let verify = match mode {
        PgSslMode::Require if root.is_some() => PgSslMode::VerifyCa,
        other => other,
    };
    config.ssl_mode(match mode {
        PgSslMode::Disable => SslMode::Disable,
        PgSslMode::Prefer => SslMode::Prefer,
        PgSslMode::Require | PgSslMode::VerifyCa | PgSslMode::VerifyFull => SslMode::Require,
    });
    // ring, not aws-lc-rs: aws-lc-rs needs cmake and a C build of its own. rustls marks
    // ring's provider deprecated because it lacks post-quantum key exchange; its classical
    // suites (X25519, ECDHE with AES-GCM and ChaCha20) are what servers negotiate with libpq.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::invalid("postgres tls", e))?;
    let client = match verify {
        PgSslMode::VerifyFull => builder
            .with_webpki_verifier(webpki_verifier(root.as_deref(), verify, &provider)?)
            .with_no_client_auth(),
        PgSslMode::Disable | PgSslMode::Prefer | PgSslMode::Require | PgSslMode::VerifyCa => {
            let chain = match verify {
                PgSslMode::VerifyCa => Some(webpki_verifier(root.as_deref(), verify, &provider)?),
                _ => None,
            };
            let algorithms = provider.signature_verification_algorithms;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Relaxed { chain, algorithms }))
                .with_no_client_auth()
        }
    };
    let described = match (&root, verify) {
        (Some(root), _) => format!("sslmode={mode}, sslrootcert={root}"),
        (None, PgSslMode::VerifyCa | PgSslMode::VerifyFull) => {
            format!("sslmode={mode}, roots from the system's store")
        }
        (None, _) => format!("sslmode={mode}"),
    };
    Ok(Resolved {
        config,
        summary: TlsSummary { mode, described },
        connector: MakeRustlsConnect::new(client),
    })
}

/// A value set in the connection string and in the settings must be the same.
fn agree<T: PartialEq + fmt::Display>(
    name: &str,
    in_url: Option<T>,
    in_settings: Option<T>,
) -> Result<Option<T>> {
    match (in_url, in_settings) {
        (Some(url), Some(settings)) if url != settings => Err(Error::invalid(
            "postgres tls",
            format!("the url says {name}={url} but the settings say {name}={settings}"),
        )),
        (url, settings) => Ok(url.or(settings)),
    }
}

/// Whether every server the config names is reached without crossing a network.
fn loopback_only(config: &tokio_postgres::Config) -> bool {
    let addresses = config.get_hostaddrs();
    if !addresses.is_empty() {
        return addresses.iter().all(IpAddr::is_loopback);
    }
    let hosts = config.get_hosts();
    !hosts.is_empty()
        && hosts.iter().all(|host| match host {
            Host::Tcp(name) => {
                name.eq_ignore_ascii_case("localhost")
                    || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
            }
            Host::Unix(_) => true,
        })
}

/// The roots of `root` (a PEM file, or the system's store when `None` or `system`) in a
/// verifier of chains and names.
fn webpki_verifier(
    root: Option<&str>,
    mode: PgSslMode,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>> {
    let mut roots = RootCertStore::empty();
    match root.filter(|root| *root != SYSTEM_ROOTS) {
        Some(path) => {
            let certificates = CertificateDer::pem_file_iter(path)
                .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
                .map_err(|e| {
                    Error::invalid("postgres sslrootcert", format!("cannot read {path}: {e}"))
                })?;
            let (added, _) = roots.add_parsable_certificates(certificates);
            if added == 0 {
                return Err(Error::invalid(
                    "postgres sslrootcert",
                    format!("{path} holds no usable certificate"),
                ));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(Error::invalid(
                    "postgres sslrootcert",
                    format!(
                        "sslmode={mode} checks the server's certificate, but the system's store \
                         holds no trusted root: set sslrootcert to the server's CA certificate"
                    ),
                ));
            }
        }
    }
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
        .build()
        .map_err(|e| Error::invalid("postgres sslrootcert", e))
}

/// The verifier of the modes that check less than `verify-full`. Without `chain` (`prefer`,
/// `require`) it accepts any certificate: the connection is encrypted, its peer unchecked, as
/// libpq does in these modes. With `chain` (`verify-ca`) the chain must end at a trusted root
/// and the name is not checked: rustls checks the chain before the name, so a name error
/// means the chain passed. Either way the handshake's signatures are verified with the key of
/// the certificate presented.
#[derive(Debug)]
struct Relaxed {
    chain: Option<Arc<WebPkiServerVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Relaxed {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else { return Ok(ServerCertVerified::assertion()) };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, certificate, signature, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, certificate, signature, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// What a failed connection means for its TLS, in words, when it is about TLS: the hint of
/// [`super::conn::ConnectError`].
pub(super) fn explain(
    tls: &TlsSummary,
    error: &(dyn std::error::Error + 'static),
) -> Option<String> {
    let described = &tls.described;
    let mut cause = Some(error);
    while let Some(error) = cause {
        let handshake = error.downcast_ref::<rustls::Error>().or_else(|| {
            error.downcast_ref::<std::io::Error>()?.get_ref()?.downcast_ref::<rustls::Error>()
        });
        if let Some(handshake) = handshake {
            return Some(match handshake {
                rustls::Error::InvalidCertificate(certificate) => match certificate {
                    CertificateError::UnknownIssuer => format!(
                        "the server's certificate is not signed by a trusted certificate \
                         authority ({described})"
                    ),
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. } => format!(
                        "the server's certificate does not name the host connected to \
                         ({described})"
                    ),
                    CertificateError::Expired
                    | CertificateError::ExpiredContext { .. }
                    | CertificateError::NotValidYet
                    | CertificateError::NotValidYetContext { .. } => format!(
                        "the server's certificate is expired or not yet valid ({described})"
                    ),
                    _ => format!("the server's certificate was refused ({described})"),
                },
                _ => format!("the tls handshake failed ({described})"),
            });
        }
        if let Some(postgres) = error.downcast_ref::<tokio_postgres::Error>() {
            if postgres.to_string().contains("server does not support TLS") {
                return Some(format!("the server does not offer tls, which {described} requires"));
            }
            let unencrypted = postgres.as_db_error().is_some_and(|db| {
                *db.code() == tokio_postgres::error::SqlState::INVALID_AUTHORIZATION_SPECIFICATION
                    && db.message().contains("no encryption")
            });
            if unencrypted && tls.mode == PgSslMode::Disable {
                return Some(
                    "the server accepts this role only over tls, which sslmode=disable forbids \
                     (use verify-full, verify-ca or require)"
                        .to_owned(),
                );
            }
        }
        cause = error.source();
    }
    None
}

/// A connection string without `sslmode` and `sslrootcert`, and their values.
#[derive(Debug, PartialEq)]
struct Extracted {
    rest: String,
    mode: Option<String>,
    root_cert: Option<String>,
}

/// Takes `sslmode` and `sslrootcert` out of a URL (`postgres://...?sslmode=...`) or a key/value
/// string (`host=... sslmode=...`), leaving every other parameter as written.
fn extract(url: &str) -> Result<Extracted> {
    let mut extracted = Extracted { rest: String::new(), mode: None, root_cert: None };
    let mut take = |key: &str, value: String| match key {
        "sslmode" => {
            extracted.mode = Some(value);
            true
        }
        "sslrootcert" => {
            extracted.root_cert = Some(value);
            true
        }
        _ => false,
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else {
            return Ok(Extracted { rest: url.to_owned(), ..extracted });
        };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if !take(&decode(key)?, decode(value)?) {
                kept.push(pair);
            }
        }
        if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) }
    } else {
        let mut rest = String::with_capacity(url.len());
        for parameter in key_values(url)? {
            if !take(parameter.key, parameter.value) {
                if !rest.is_empty() {
                    rest.push(' ');
                }
                rest.push_str(parameter.text);
            }
        }
        rest
    };
    Ok(Extracted { rest, ..extracted })
}

fn decode(text: &str) -> Result<String> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|e| Error::invalid("postgres url", e))
}

/// One `key=value` of a key/value connection string.
struct KeyValue<'a> {
    key: &'a str,
    value: String,
    /// The parameter as written.
    text: &'a str,
}

/// Splits a libpq key/value string: `key = value`, the value unquoted up to whitespace or in
/// single quotes, a backslash escaping the next character in either.
fn key_values(text: &str) -> Result<Vec<KeyValue<'_>>> {
    let malformed = || Error::invalid("postgres url", "a malformed key=value connection string");
    let bytes = text.as_bytes();
    let mut parameters = Vec::new();
    let mut i = 0;
    let skip_spaces = |mut i: usize| {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    loop {
        i = skip_spaces(i);
        if i == bytes.len() {
            return Ok(parameters);
        }
        let start = i;
        while i < bytes.len() && bytes[i] != b'=' && !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = &text[start..i];
        i = skip_spaces(i);
        if key.is_empty() || bytes.get(i) != Some(&b'=') {
            return Err(malformed());
        }
        i = skip_spaces(i + 1);
        let mut value = Vec::new();
        let quoted = bytes.get(i) == Some(&b'\'');
        if quoted {
            i += 1;
        }
        loop {
            match bytes.get(i) {
                None if quoted => return Err(malformed()),
                None => break,
                Some(b'\'') if quoted => {
                    i += 1;
                    break;
                }
                Some(byte) if !quoted && byte.is_ascii_whitespace() => break,
                Some(b'\\') => {
                    let escaped = *bytes.get(i + 1).ok_or_else(malformed)?;
                    value.push(escaped);
                    i += 2;
                }
                Some(byte) => {
                    value.push(*byte);
                    i += 1;
                }
            }
        }
        let value = String::from_utf8(value).map_err(|_| malformed())?;
        parameters.push(KeyValue { key, value, text: &text[start..i] });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(url: &str) -> Resolved {
        resolve(url, &PgConfig::new(url)).expect("resolves")
    }

    #[test]
    fn remote_hosts_default_to_verify_full_and_loopback_to_prefer() {
        for (url, mode) in [
            ("postgres://u:p@db.example.com/percolate", PgSslMode::VerifyFull),
            ("postgres://u:p@10.0.0.5:5433/percolate", PgSslMode::VerifyFull),
            ("postgres://u:p@127.0.0.1:5433/percolate", PgSslMode::Prefer),
            ("postgres://u:p@127.0.0.2/percolate", PgSslMode::Prefer),
            ("postgres://u:p@localhost/percolate", PgSslMode::Prefer),
            ("postgres://u:p@[::1]:5432/percolate", PgSslMode::Prefer),
            ("host=/var/run/postgresql user=u", PgSslMode::Prefer),
            ("host=localhost,db.example.com user=u", PgSslMode::VerifyFull),
            ("host=db.example.com hostaddr=127.0.0.1 user=u", PgSslMode::Prefer),
        ] {
            assert_eq!(resolved(url).summary.mode, mode, "{url}");
        }
    }

    #[test]
    fn sslmode_and_sslrootcert_are_taken_out_of_urls_and_key_value_strings() {
        let url = "postgres://u:p%26@h:1/db?application_name=a%20b&sslmode=verify-ca\
                   &sslrootcert=%2Ftmp%2Fca.pem&connect_timeout=3";
        assert_eq!(
            extract(url).expect("url"),
            Extracted {
                rest: "postgres://u:p%26@h:1/db?application_name=a%20b&connect_timeout=3".into(),
                mode: Some("verify-ca".into()),
                root_cert: Some("/tmp/ca.pem".into()),
            }
        );
        let only = extract("postgresql://h/db?sslmode=disable").expect("url");
        assert_eq!(only.rest, "postgresql://h/db");
        let text = "host=h  sslmode = 'verify-full' password='it\\'s secret' sslrootcert=/a\\ b";
        assert_eq!(
            extract(text).expect("key value"),
            Extracted {
                rest: "host=h password='it\\'s secret'".into(),
                mode: Some("verify-full".into()),
                root_cert: Some("/a b".into()),
            }
        );
        assert!(matches!(extract("host='unterminated"), Err(Error::Invalid { .. })));
    }

    #[test]
    fn every_libpq_mode_parses_and_others_are_invalid() {
        for mode in [
            PgSslMode::Disable,
            PgSslMode::Prefer,
            PgSslMode::Require,
            PgSslMode::VerifyCa,
            PgSslMode::VerifyFull,
        ] {
            assert_eq!(mode.as_str().parse::<PgSslMode>().expect("parses"), mode);
        }
        let error = resolve("postgres://h/db?sslmode=allow", &PgConfig::new("")).err();
        assert!(
            matches!(&error, Some(Error::Invalid { what: "postgres sslmode", .. })),
            "{error:?}"
        );
    }

    #[test]
    fn the_url_and_the_settings_must_agree() {
        let url = "postgres://u@db.example.com/db?sslmode=require";
        let settings = PgConfig::new(url).with_ssl_mode(PgSslMode::Disable);
        let error = resolve(url, &settings).err().expect("conflict");
        assert!(error.to_string().contains("sslmode=require"), "{error}");
        let settings = PgConfig::new(url).with_ssl_mode(PgSslMode::Require);
        assert_eq!(resolve(url, &settings).expect("same").summary.mode, PgSslMode::Require);
        let settings = PgConfig::new("").with_ssl_mode(PgSslMode::Disable);
        let remote = resolve("postgres://u@db.example.com/db", &settings).expect("settings");
        assert_eq!(remote.summary.mode, PgSslMode::Disable);
    }

    #[test]
    fn an_unreadable_root_certificate_is_invalid_naming_the_file() {
        let url = "postgres://u@db.example.com/db?sslrootcert=/nonexistent/ca.pem";
        let error = resolve(url, &PgConfig::new(url)).err().expect("missing file");
        assert!(
            matches!(&error, Error::Invalid { what: "postgres sslrootcert", reason }
                if reason.contains("/nonexistent/ca.pem")),
            "{error}"
        );
    }
}
