//! TLS to authorization servers: rustls with the platform verifier (on Linux,
//! the system bundle that rustls-native-certs finds, or the `SSL_CERT_FILE` /
//! `SSL_CERT_DIR` the agent was started with) plus a profile's CA file, and
//! refusals explained: which CA issued a certificate nobody trusts, which names
//! a certificate is for, when it expired.

use jwtagent::secret::Secret;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};
use std::path::Path;
use std::sync::Arc;

/// A TLS client identity: a certificate chain and the private key of its
/// first certificate.
pub(crate) struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

/// Why a client certificate (and its key) cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("the client certificate is not valid PEM: {0}")]
    NotPem(String),
    #[error("the client certificate file holds no certificate")]
    Empty,
    #[error("the client certificate cannot be read: {0}")]
    Unreadable(String),
    #[error("the private key cannot be used for TLS: {0}")]
    Key(String),
    #[error(
        "the private key does not belong to the client certificate (the certificate is for another public key): give the key the certificate was issued for"
    )]
    Mismatch,
    #[error("the client certificate and key cannot be used: {0}")]
    Unusable(String),
    #[error("the client certificate expired on {0}: renew it")]
    Expired(String),
    #[error("the client certificate is not valid before {0}")]
    NotYetValid(String),
}

/// The certificates of a PEM text, in order.
pub(crate) fn certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, CertError> {
    use rustls::pki_types::pem::PemObject;
    let chain = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::NotPem(e.to_string()))?;
    if chain.is_empty() {
        return Err(CertError::Empty);
    }
    Ok(chain)
}

/// The identity of a client certificate (PEM chain) and its key (PEM),
/// checked to belong together.
pub(crate) fn identity(cert_pem: &str, key_pem: &Secret) -> Result<Identity, CertError> {
    use rustls::pki_types::pem::PemObject;
    let chain = certificates(cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.expose())
        .map_err(|e| CertError::Key(e.to_string()))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    match rustls::sign::CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider) {
        Ok(_) => Ok(Identity { chain, key }),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(CertError::Mismatch)
        }
        Err(e) => Err(CertError::Unusable(e.to_string())),
    }
}

/// Checks, when a profile is added, that the certificate and key belong
/// together and that the certificate is valid now.
pub(crate) fn check_identity(cert_pem: &str, key_pem: &Secret) -> Result<(), CertError> {
    let identity = identity(cert_pem, key_pem)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&identity.chain[0])
        .map_err(|e| CertError::Unreadable(e.to_string()))?;
    let validity = cert.validity();
    let now = x509_parser::time::ASN1Time::now();
    if now > validity.not_after {
        return Err(CertError::Expired(validity.not_after.to_string()));
    }
    if now < validity.not_before {
        return Err(CertError::NotYetValid(validity.not_before.to_string()));
    }
    Ok(())
}

/// A certificate as `show` describes it: subject, issuer unless
/// self-signed, end of validity, and `x5t#S256`.
pub(crate) fn describe(cert_pem: &str) -> Option<String> {
    let chain = certificates(cert_pem).ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&chain[0]).ok()?;
    let subject = cert.subject().to_string();
    let issuer = cert.issuer().to_string();
    let by = if issuer == subject {
        "self-signed".to_string()
    } else {
        format!("issued by {issuer}")
    };
    let text = format!(
        "{subject}, {by}, valid until {}, x5t#S256 {}",
        cert.validity().not_after,
        x5t_s256(cert_pem).ok()?
    );
    Some(text.chars().filter(|c| !c.is_control()).collect())
}

/// How long a certificate `keygen` makes is valid.
const SELF_SIGNED_VALIDITY: std::time::Duration = std::time::Duration::from_secs(2 * 365 * 86400);

/// A self-signed certificate (PEM) for the key `key_pem`, subject
/// CN=`subject`, valid from now for two years: for
/// self_signed_tls_client_auth, where the server knows the certificate by
/// its thumbprint.
pub(crate) fn self_signed(key_pem: &Secret, subject: &str) -> Result<String, CertError> {
    let pem = std::str::from_utf8(key_pem.expose()).map_err(|e| CertError::Key(e.to_string()))?;
    let key = rcgen::KeyPair::from_pem(pem).map_err(|e| CertError::Key(e.to_string()))?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    let cn: String = subject.chars().filter(|c| !c.is_control()).collect();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let now = jwtagent::time::unix_now();
    let start = time::OffsetDateTime::from_unix_timestamp(i64::try_from(now).unwrap_or(0))
        .map_err(|e| CertError::Unusable(e.to_string()))?;
    params.not_before = start;
    params.not_after = start + SELF_SIGNED_VALIDITY;
    params
        .self_signed(&key)
        .map(|cert| cert.pem())
        .map_err(|e| CertError::Unusable(e.to_string()))
}

/// The `x5t#S256` of a certificate (RFC 7515 §4.1.8, RFC 8705 §3.1):
/// SHA-256 of the first certificate's DER, base64url.
pub(crate) fn x5t_s256(cert_pem: &str) -> Result<String, CertError> {
    use base64::Engine;
    let chain = certificates(cert_pem)?;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &chain[0]);
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref()))
}

/// Why an HTTPS client cannot be set up.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read ca_file {path}: {detail}")]
    CaFile {
        path: std::path::PathBuf,
        detail: String,
    },
    #[error("cannot set up HTTPS: {0}")]
    Tls(String),
    #[error(transparent)]
    Certificate(#[from] CertError),
}

/// The rustls configuration of one HTTP client: the platform's roots plus the
/// certificates of `ca_file`, and the client certificate to present, if any.
pub(crate) fn client_config(
    ca_file: Option<&Path>,
    identity: Option<Identity>,
) -> Result<rustls::ClientConfig, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let extra = match ca_file {
        Some(path) => read_ca_file(path)?,
        None => Vec::new(),
    };
    let platform =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())
            .map_err(|e| TlsSetupError::Tls(e.to_string()))?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Explaining(Arc::new(platform))));
    let mut config = match identity {
        Some(Identity { chain, key }) => config
            .with_client_auth_cert(chain, key)
            .map_err(|e| CertError::Unusable(e.to_string()))?,
        None => config.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// A CA bundle larger than this is not read (the system's whole bundle is
/// about 200 KiB).
pub(crate) const MAX_CA_FILE: u64 = 4 * 1024 * 1024;

fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    use rustls::pki_types::pem::PemObject;
    let err = |detail: String| TlsSetupError::CaFile {
        path: path.to_path_buf(),
        detail,
    };
    let pem = jwtagent::files::read_regular(path, MAX_CA_FILE).map_err(|e| err(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("not a PEM bundle: {e}")))?;
    if certs.is_empty() {
        return Err(err("it holds no PEM certificate".into()));
    }
    Ok(certs)
}

/// Why a server's certificate was refused, as the user can act on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsProblem {
    #[error(
        "its certificate was issued by {}, a CA this machine does not trust. If the server uses a private CA, give that CA's certificate to the profile with --ca-file CA.pem (jwtagent add NAME ... --ca-file CA.pem), or add it to the system trust store (the agent reads SSL_CERT_FILE and SSL_CERT_DIR when it starts)",
        .issuer.as_deref().unwrap_or("an unknown CA")
    )]
    UnknownIssuer { issuer: Option<String> },
    #[error(
        "its certificate is for {}, not {expected}: use a host name the certificate names in the profile's URL",
        if presented.is_empty() { "other names".to_string() } else { presented.join(", ") }
    )]
    WrongName {
        expected: String,
        presented: Vec<String>,
    },
    #[error(
        "its certificate expired {}: the server's certificate must be renewed (or this machine's clock is wrong)",
        when(*not_after)
    )]
    Expired { not_after: Option<u64> },
    #[error(
        "its certificate is not valid until {}: check this machine's clock",
        when(*not_before)
    )]
    NotYetValid { not_before: Option<u64> },
    #[error("{0}")]
    Other(String),
}

fn when(unix: Option<u64>) -> String {
    match unix.and_then(|s| x509_parser::time::ASN1Time::from_timestamp(s as i64).ok()) {
        Some(t) => format!("on {t}"),
        None => "already".into(),
    }
}

impl TlsProblem {
    /// The TLS refusal somewhere in `error`'s chain of causes, if that is why
    /// it failed.
    pub fn find(error: &(dyn std::error::Error + 'static)) -> Option<TlsProblem> {
        let mut next = Some(error);
        while let Some(e) = next {
            if let Some(rustls) = e.downcast_ref::<rustls::Error>() {
                return Some(TlsProblem::from_rustls(rustls));
            }
            // An io::Error's source() skips the error it wraps (hyper's
            // connector wraps rustls's error in two of them).
            next = match e.downcast_ref::<std::io::Error>() {
                Some(io) => io
                    .get_ref()
                    .map(|inner| inner as &(dyn std::error::Error + 'static)),
                None => e.source(),
            };
        }
        None
    }

    fn from_rustls(e: &rustls::Error) -> TlsProblem {
        let rustls::Error::InvalidCertificate(cert) = e else {
            return TlsProblem::Other(e.to_string());
        };
        match cert {
            CertificateError::UnknownIssuer => TlsProblem::UnknownIssuer { issuer: None },
            CertificateError::Other(other) => match other.0.downcast_ref::<UnknownCa>() {
                Some(UnknownCa(issuer)) => TlsProblem::UnknownIssuer {
                    issuer: Some(issuer.clone()),
                },
                None => TlsProblem::Other(e.to_string()),
            },
            CertificateError::NotValidForNameContext {
                expected,
                presented,
            } => TlsProblem::WrongName {
                expected: expected.to_str().into_owned(),
                presented: presented.iter().map(|p| plain_name(p)).collect(),
            },
            CertificateError::NotValidForName => TlsProblem::WrongName {
                expected: "the host name".into(),
                presented: Vec::new(),
            },
            CertificateError::ExpiredContext { not_after, .. } => TlsProblem::Expired {
                not_after: Some(not_after.as_secs()),
            },
            CertificateError::Expired => TlsProblem::Expired { not_after: None },
            CertificateError::NotValidYetContext { not_before, .. } => TlsProblem::NotYetValid {
                not_before: Some(not_before.as_secs()),
            },
            CertificateError::NotValidYet => TlsProblem::NotYetValid { not_before: None },
            _ => TlsProblem::Other(e.to_string()),
        }
    }
}

/// A name as rustls presents it (`DnsName("idp.example")`), as a user
/// writes it (`idp.example`).
fn plain_name(presented: &str) -> String {
    let inner = ["DnsName(\"", "IpAddress("]
        .iter()
        .find_map(|prefix| presented.strip_prefix(prefix))
        .map(|rest| rest.trim_end_matches(')').trim_end_matches('"'));
    inner
        .unwrap_or(presented)
        .chars()
        .filter(|c| !c.is_control())
        .collect()
}

/// An unknown issuer, by name (the refused certificate's issuer field).
#[derive(Debug)]
struct UnknownCa(String);

impl std::fmt::Display for UnknownCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unknown issuer {}", self.0)
    }
}

impl std::error::Error for UnknownCa {}

/// The issuer of a DER certificate, printable ("CN=..., O=...").
fn issuer_of(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let name = cert.issuer().to_string();
    (!name.is_empty()).then(|| name.chars().filter(|c| !c.is_control()).collect())
}

/// The platform verifier, with the issuer's name added to an unknown-issuer
/// refusal (the verifier itself only says "UnknownIssuer").
#[derive(Debug)]
struct Explaining(Arc<dyn ServerCertVerifier>);

impl ServerCertVerifier for Explaining {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .map_err(|e| match e {
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
                    // The CA of the last certificate the server sent.
                    let top = intermediates.last().unwrap_or(end_entity);
                    match issuer_of(top) {
                        Some(issuer) => rustls::Error::InvalidCertificate(CertificateError::Other(
                            OtherError(Arc::new(UnknownCa(issuer))),
                        )),
                        None => e,
                    }
                }
                e => e,
            })
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

    fn requires_raw_public_keys(&self) -> bool {
        self.0.requires_raw_public_keys()
    }

    fn root_hint_subjects(&self) -> Option<&[rustls::DistinguishedName]> {
        self.0.root_hint_subjects()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> (rcgen::KeyPair, Secret) {
        let key = rcgen::KeyPair::generate().unwrap();
        let pem = Secret::new(key.serialize_pem().into_bytes());
        (key, pem)
    }

    /// A certificate for `key` valid from `from` to `to` days from now.
    fn cert(key: &rcgen::KeyPair, from: i64, to: i64) -> String {
        let mut params = rcgen::CertificateParams::new(vec!["client.example".into()]).unwrap();
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now + time::Duration::days(from);
        params.not_after = now + time::Duration::days(to);
        params.self_signed(key).unwrap().pem()
    }

    /// Each refusal rustls can report is told as what the user acts on;
    /// the unknown CA the agent's own verifier names, by its name.
    #[test]
    fn each_certificate_refusal_is_told_as_what_to_do() {
        let told = |cert: CertificateError| {
            TlsProblem::from_rustls(&rustls::Error::InvalidCertificate(cert))
        };
        let at = |secs| UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs));
        let named = UnknownCa("CN=Private CA".into());
        assert_eq!(named.to_string(), "unknown issuer CN=Private CA");
        let cases = [
            (
                CertificateError::UnknownIssuer,
                TlsProblem::UnknownIssuer { issuer: None },
            ),
            (
                CertificateError::Other(OtherError(Arc::new(named))),
                TlsProblem::UnknownIssuer {
                    issuer: Some("CN=Private CA".into()),
                },
            ),
            (
                CertificateError::NotValidForName,
                TlsProblem::WrongName {
                    expected: "the host name".into(),
                    presented: Vec::new(),
                },
            ),
            (
                CertificateError::Expired,
                TlsProblem::Expired { not_after: None },
            ),
            (
                CertificateError::ExpiredContext {
                    time: at(2_000),
                    not_after: at(1_000),
                },
                TlsProblem::Expired {
                    not_after: Some(1_000),
                },
            ),
            (
                CertificateError::NotValidYet,
                TlsProblem::NotYetValid { not_before: None },
            ),
            (
                CertificateError::NotValidYetContext {
                    time: at(1_000),
                    not_before: at(2_000),
                },
                TlsProblem::NotYetValid {
                    not_before: Some(2_000),
                },
            ),
        ];
        for (cert, problem) in cases {
            assert_eq!(told(cert), problem);
        }
        assert!(matches!(
            told(CertificateError::Revoked),
            TlsProblem::Other(text) if text.to_lowercase().contains("revoked")
        ));
    }

    /// A CA bundle is read up to 4 MiB (a system's whole bundle is about
    /// 200 KiB, with comments), and not past it.
    #[test]
    fn a_ca_file_is_read_up_to_four_mebibytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        let (key, _) = key();
        let mut text = cert(&key, -1, 1);
        text.push_str(&"# a comment line\n".repeat(3 * 1024 * 1024 / 17));
        std::fs::write(&path, &text).unwrap();
        assert_eq!(read_ca_file(&path).unwrap().len(), 1);
        text.push_str(&"#".repeat(1024 * 1024));
        std::fs::write(&path, &text).unwrap();
        assert!(text.len() as u64 > MAX_CA_FILE);
        assert!(read_ca_file(&path).is_err());
    }

    #[test]
    fn a_client_certificate_is_refused_outside_its_validity() {
        let (key, pem) = key();
        assert_eq!(check_identity(&cert(&key, -1, 1), &pem), Ok(()));
        assert!(matches!(
            check_identity(&cert(&key, 1, 2), &pem),
            Err(CertError::NotYetValid(_))
        ));
        assert!(matches!(
            check_identity(&cert(&key, -2, -1), &pem),
            Err(CertError::Expired(_))
        ));
    }

    #[test]
    fn keygen_s_certificate_lasts_two_years_and_names_its_subject_plainly() {
        let (_, pem) = key();
        let made = self_signed(&pem, "svc\u{1b}[2J").unwrap();
        assert_eq!(check_identity(&made, &pem), Ok(()));
        let der = certificates(&made).unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(&der[0]).unwrap();
        let validity = parsed.validity();
        assert_eq!(
            validity.not_after.timestamp() - validity.not_before.timestamp(),
            2 * 365 * 86400
        );
        let said = describe(&made).unwrap();
        assert!(
            said.starts_with("CN=svc[2J, self-signed, valid until "),
            "{said}"
        );
    }

    #[test]
    fn presented_names_read_as_written() {
        assert_eq!(plain_name("DnsName(\"idp.example\")"), "idp.example");
        assert_eq!(plain_name("IpAddress(10.0.0.1)"), "10.0.0.1");
        assert_eq!(plain_name("odd\u{1b}[2J"), "odd[2J");
    }

    #[test]
    fn a_refusal_is_found_under_nested_io_errors() {
        let rustls = rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(
            Arc::new(UnknownCa("CN=Private CA".into())),
        )));
        let inner = std::io::Error::new(std::io::ErrorKind::InvalidData, rustls);
        let outer = std::io::Error::other(inner);
        assert_eq!(
            TlsProblem::find(&outer),
            Some(TlsProblem::UnknownIssuer {
                issuer: Some("CN=Private CA".into())
            })
        );
        assert_eq!(TlsProblem::find(&std::io::Error::other("refused")), None);
    }
}
