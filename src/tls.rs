//! TLS for both engines: the URL parameters (`sslmode`/`sslrootcert` for PostgreSQL,
//! `ssl-mode`/`ssl-ca` for MySQL/MariaDB) parsed into validated settings, the rustls
//! connector for PostgreSQL and the mysql driver's options, and TLS failures explained in
//! terms of what to check.
//!
//! Modes mean what they mean to libpq and to the mysql client. This module must never verify
//! less than the mode asks for, and never connects to a database itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

/// How far the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Encrypted, but any certificate is accepted (libpq `require`, MySQL `REQUIRED`).
    Nothing,
    /// The certificate must chain to the given CA; any host name.
    Chain,
    /// The chain, and the certificate must name the host connected to.
    ChainAndHost,
}

/// PostgreSQL `sslmode`, as libpq reads it (`allow` is not offered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgSslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// Validated PostgreSQL TLS settings, with the connector built once from them.
#[derive(Clone)]
pub struct PgTls {
    pub mode: PgSslMode,
    /// `sslrootcert`, when one is used.
    pub root_cert: Option<PathBuf>,
    pub verify: Verify,
    connector: MakeRustlsConnect,
}

impl std::fmt::Debug for PgTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgTls({:?}, {:?}, {:?})", self.mode, self.root_cert, self.verify)
    }
}

impl PgTls {
    /// From the URL's `sslmode` and `sslrootcert` values (libpq's defaults when absent: `prefer`,
    /// and `~/.postgresql/root.crt` when it exists). As in libpq, `prefer`/`require` with a root
    /// certificate verify the chain like `verify-ca`.
    pub fn from_params(sslmode: Option<&str>, sslrootcert: Option<&str>) -> Result<Self, String> {
        let mode = match sslmode.unwrap_or("prefer") {
            "disable" => PgSslMode::Disable,
            "prefer" => PgSslMode::Prefer,
            "require" => PgSslMode::Require,
            "verify-ca" => PgSslMode::VerifyCa,
            "verify-full" => PgSslMode::VerifyFull,
            "allow" => return Err("sslmode=allow is not supported; use prefer or disable".into()),
            other => {
                return Err(format!(
                    "invalid sslmode={other:?}; expected disable, prefer, require, verify-ca or verify-full"
                ))
            }
        };
        let root_path = match sslrootcert {
            Some("system") => {
                return Err("sslrootcert=system is not supported; give the path of the CA certificate (PEM)".into())
            }
            Some(path) => Some(PathBuf::from(path)),
            None => default_pg_root_cert(),
        };
        let root = match (mode, root_path) {
            (PgSslMode::Disable, _) | (_, None) => None,
            (_, Some(path)) => Some((load_roots(&path, "sslrootcert")?, path)),
        };
        let verify = match (mode, &root) {
            (PgSslMode::Disable, _) | (PgSslMode::Prefer | PgSslMode::Require, None) => Verify::Nothing,
            (PgSslMode::Prefer | PgSslMode::Require | PgSslMode::VerifyCa, Some(_)) => Verify::Chain,
            (PgSslMode::VerifyFull, Some(_)) => Verify::ChainAndHost,
            (PgSslMode::VerifyCa | PgSslMode::VerifyFull, None) => {
                return Err(format!(
                    "sslmode={} needs sslrootcert=PATH, the CA certificate (PEM) that signed the server's \
                     certificate (or ~/.postgresql/root.crt)",
                    sslmode.unwrap_or_default()
                ))
            }
        };
        let certs = root.as_ref().map(|(certs, _)| certs.as_slice()).unwrap_or_default();
        let connector = MakeRustlsConnect::new(client_config(verify, certs)?);
        Ok(PgTls { mode, root_cert: root.map(|(_, path)| path), verify, connector })
    }

    /// The mode handed to tokio-postgres, which knows only whether TLS is off, tried or required;
    /// verification is the connector's.
    pub fn driver_mode(&self) -> tokio_postgres::config::SslMode {
        match self.mode {
            PgSslMode::Disable => tokio_postgres::config::SslMode::Disable,
            PgSslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        }
    }

    pub fn connector(&self) -> MakeRustlsConnect {
        self.connector.clone()
    }

    /// What to check, when `err` (a connection error from the driver) is a TLS failure.
    pub fn explain(&self, err: &(dyn std::error::Error + 'static), host: &str) -> Option<String> {
        let param = format!("sslrootcert {}", path_text(self.root_cert.as_deref()));
        explain(err, host, &param, "sslmode=verify-ca")
    }
}

fn default_pg_root_cert() -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var_os("HOME")?).join(".postgresql/root.crt");
    path.is_file().then_some(path)
}

/// MySQL `ssl-mode`, as the mysql client reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MySslMode {
    Disabled,
    Preferred,
    Required,
    VerifyCa,
    VerifyIdentity,
}

/// Validated MySQL/MariaDB TLS settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MyTls {
    pub mode: MySslMode,
    /// `ssl-ca`, when verification uses it.
    pub ca: Option<PathBuf>,
}

impl MyTls {
    /// From the URL's `ssl-mode` and `ssl-ca` values. As in the mysql client, the default is
    /// `PREFERRED`, or `VERIFY_CA` when `ssl-ca` is given; `REQUIRED` does not verify even with
    /// `ssl-ca`.
    pub fn from_params(ssl_mode: Option<&str>, ssl_ca: Option<&str>) -> Result<Self, String> {
        let mode = match ssl_mode.map(|m| m.to_ascii_uppercase()).as_deref() {
            None if ssl_ca.is_some() => MySslMode::VerifyCa,
            None | Some("PREFERRED") => MySslMode::Preferred,
            Some("DISABLED") => MySslMode::Disabled,
            Some("REQUIRED") => MySslMode::Required,
            Some("VERIFY_CA") => MySslMode::VerifyCa,
            Some("VERIFY_IDENTITY") => MySslMode::VerifyIdentity,
            Some(_) => {
                return Err(format!(
                    "invalid ssl-mode={:?}; expected DISABLED, PREFERRED, REQUIRED, VERIFY_CA or VERIFY_IDENTITY",
                    ssl_mode.unwrap_or_default()
                ))
            }
        };
        let ca = match (mode, ssl_ca) {
            (MySslMode::VerifyCa | MySslMode::VerifyIdentity, Some(path)) => {
                let path = PathBuf::from(path);
                load_roots(&path, "ssl-ca")?;
                Some(path)
            }
            (MySslMode::VerifyCa, None) => {
                return Err("ssl-mode=VERIFY_CA needs ssl-ca=PATH, the CA certificate (PEM) that signed the server's \
                     certificate"
                    .into())
            }
            _ => None,
        };
        Ok(MyTls { mode, ca })
    }

    /// Whether the connection must be encrypted on the wire (then the driver must not switch
    /// to the server's unix socket, which it does for loopback addresses otherwise).
    pub fn required(&self) -> bool {
        !matches!(self.mode, MySslMode::Disabled | MySslMode::Preferred)
    }

    /// The mysql driver's options. The driver also trusts the public web CAs it ships with,
    /// besides `ssl-ca`.
    pub fn ssl_opts(&self) -> Option<mysql::SslOpts> {
        let opts = mysql::SslOpts::default();
        match self.mode {
            MySslMode::Disabled => None,
            MySslMode::Preferred | MySslMode::Required => Some(opts.with_danger_accept_invalid_certs(true)),
            MySslMode::VerifyCa => {
                Some(opts.with_root_cert_path(self.ca.clone()).with_danger_skip_domain_validation(true))
            }
            MySslMode::VerifyIdentity => Some(opts.with_root_cert_path(self.ca.clone())),
        }
    }

    /// What to check, when `err` (a connection error from the driver) is a TLS failure.
    pub fn explain(&self, err: &mysql::Error, host: &str) -> Option<String> {
        match err {
            mysql::Error::DriverError(mysql::DriverError::TlsNotSupported) => Some(
                "the server does not accept TLS; enable TLS on the server (ssl-cert, ssl-key) or use \
                 ssl-mode=PREFERRED or DISABLED"
                    .into(),
            ),
            mysql::Error::MySqlError(e) if e.code == 1045 && self.mode == MySslMode::Disabled => Some(format!(
                "{e}; check the user and password (in the URL or MYSQL_PWD), and whether the user must connect \
                 over TLS (REQUIRE SSL: use ssl-mode=REQUIRED or stricter)"
            )),
            // The driver's error has no `source`: its I/O, codec and TLS variants are the way in.
            mysql::Error::IoError(inner) => self.explain_inner(inner, host),
            mysql::Error::CodecError(inner) => self.explain_inner(inner, host),
            mysql::Error::TlsError(inner) => self.explain_inner(inner, host),
            _ => None,
        }
    }
}

impl MyTls {
    fn explain_inner(&self, err: &(dyn std::error::Error + 'static), host: &str) -> Option<String> {
        let param = format!("ssl-ca {}", path_text(self.ca.as_deref()));
        explain(err, host, &param, "ssl-mode=VERIFY_CA")
    }
}

fn path_text(path: Option<&Path>) -> String {
    path.map(|p| p.display().to_string()).unwrap_or_else(|| "(none given)".into())
}

/// Reads the PEM certificates of a CA file, refusing a missing, unreadable or empty one.
fn load_roots(path: &Path, param: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| format!("{param}={shown}: cannot read the file ({e})"))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{param}={shown}: not a PEM certificate file ({e})"))?;
    if certs.is_empty() {
        return Err(format!("{param}={shown}: holds no PEM certificate (-----BEGIN CERTIFICATE-----)"));
    }
    Ok(certs)
}

fn client_config(verify: Verify, roots: &[CertificateDer<'static>]) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let algorithms = provider.signature_verification_algorithms;
    let verifier: Arc<dyn ServerCertVerifier> = match verify {
        Verify::Nothing => Arc::new(EncryptOnly(algorithms)),
        Verify::Chain | Verify::ChainAndHost => {
            let mut store = RootCertStore::empty();
            for cert in roots {
                store.add(cert.clone()).map_err(|e| format!("sslrootcert: unusable CA certificate ({e})"))?;
            }
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
                .build()
                .map_err(|e| format!("sslrootcert: unusable CA certificates ({e})"))?;
            if verify == Verify::Chain {
                Arc::new(ChainOnly(webpki))
            } else {
                webpki
            }
        }
    };
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("setting up TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// Accepts any certificate, still checking that the server holds its key (libpq `require`).
#[derive(Debug)]
struct EncryptOnly(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// Checks the chain but not the host name (libpq `verify-ca`).
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The rustls error somewhere in `err`'s source chain (I/O errors wrap it without exposing it
/// as a source).
fn find_rustls_error<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        if let Some(found) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(found);
        }
        current = e.source();
    }
    None
}

/// Turns a rustls failure into what the user should check. `ca` names the CA setting and its
/// file; `chain_only` is the mode that skips the host name check.
fn explain(err: &(dyn std::error::Error + 'static), host: &str, ca: &str, chain_only: &str) -> Option<String> {
    let tls = find_rustls_error(err)?;
    Some(match tls {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => format!(
                "certificate verification failed: the server's certificate is not signed by {ca}; check that it \
                 names the CA that issued the server's certificate"
            ),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => format!(
                "host name mismatch: the server's certificate does not name {host}; connect by a name the \
                 certificate holds, or use {chain_only} to check only that {ca} signed it"
            ),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "certificate verification failed: the server's certificate has expired".into()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "certificate verification failed: the server's certificate is not valid yet (check the clock)".into()
            }
            other => format!("certificate verification failed: {other:?}"),
        },
        other => format!("TLS handshake failed: {other}"),
    })
}

/// Removes `keys` from a URL's query string, returning the rest of the URL and the removed
/// values (percent-decoded; the last of a repeated key wins).
pub fn take_params(url: &str, keys: &[&str]) -> (String, Vec<(String, String)>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_string(), Vec::new());
    };
    let mut kept = Vec::new();
    let mut taken = Vec::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = part.split_once('=').unwrap_or((part, ""));
        if keys.contains(&key) {
            taken.retain(|(k, _): &(String, String)| k != key);
            taken.push((
                key.to_string(),
                String::from_utf8_lossy(&crate::credentials::percent_decode(value)).into_owned(),
            ));
        } else {
            kept.push(part);
        }
    }
    let rest = if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) };
    (rest, taken)
}

/// The value of the first of `keys` present in `params`.
pub fn param<'a>(params: &'a [(String, String)], keys: &[&str]) -> Option<&'a str> {
    params.iter().rev().find(|(k, _)| keys.contains(&k.as_str())).map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A throwaway self-signed CA (public certificate only), for parsing.
    const CA: &str = include_str!("../tests/fixtures/unrelated-ca.pem");

    #[test]
    fn tls_parameters_are_taken_from_the_url() {
        let (rest, taken) = take_params(
            "postgres://u@h/db?sslmode=verify-ca&x=1&sslrootcert=%2Ftmp%2Fca.pem",
            &["sslmode", "sslrootcert"],
        );
        assert_eq!(rest, "postgres://u@h/db?x=1");
        assert_eq!(param(&taken, &["sslmode"]), Some("verify-ca"));
        assert_eq!(param(&taken, &["sslrootcert"]), Some("/tmp/ca.pem"));
        let (rest, taken) = take_params("mysql://u@h/db?ssl-mode=REQUIRED", &["ssl-mode"]);
        assert_eq!((rest.as_str(), taken.len()), ("mysql://u@h/db", 1));
        assert_eq!(take_params("mysql://u@h/db", &["ssl-mode"]).0, "mysql://u@h/db");
    }

    #[test]
    fn pg_modes_follow_libpq() {
        let dir = std::env::temp_dir().join(format!("rangecopy-tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, CA).unwrap();
        let ca = ca.to_str().unwrap();
        let tls = |mode: Option<&str>, root: Option<&str>| PgTls::from_params(mode, root);
        assert_eq!(tls(Some("disable"), None).unwrap().verify, Verify::Nothing);
        assert_eq!(tls(Some("require"), None).unwrap().verify, Verify::Nothing);
        assert_eq!(tls(Some("require"), Some(ca)).unwrap().verify, Verify::Chain);
        assert_eq!(tls(Some("verify-ca"), Some(ca)).unwrap().verify, Verify::Chain);
        assert_eq!(tls(Some("verify-full"), Some(ca)).unwrap().verify, Verify::ChainAndHost);
        assert!(tls(Some("verify-full"), Some("/nonexistent/ca.pem")).unwrap_err().contains("cannot read"));
        assert!(tls(Some("bogus"), None).unwrap_err().contains("invalid sslmode"));
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate").unwrap();
        assert!(tls(Some("verify-ca"), empty.to_str()).unwrap_err().contains("no PEM certificate"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn mysql_modes_follow_the_mysql_client() {
        let my = |mode: Option<&str>, ca: Option<&str>| MyTls::from_params(mode, ca);
        assert_eq!(my(None, None).unwrap().mode, MySslMode::Preferred);
        assert_eq!(my(Some("disabled"), None).unwrap().ssl_opts(), None);
        assert!(my(Some("REQUIRED"), None).unwrap().ssl_opts().unwrap().accept_invalid_certs());
        assert!(my(Some("VERIFY_CA"), None).unwrap_err().contains("needs ssl-ca"));
        assert!(my(Some("VERIFY_CA"), Some("/nonexistent/ca.pem")).unwrap_err().contains("cannot read"));
        assert!(my(Some("SOMETIMES"), None).unwrap_err().contains("invalid ssl-mode"));
        assert_eq!(
            my(None, Some("/nonexistent/ca.pem")).unwrap_err().split(':').next(),
            Some("ssl-ca=/nonexistent/ca.pem")
        );
    }
}
