//! Checking a profile's secret against its auth method when it is added: HMAC
//! secrets long enough, private keys parsed and of a type that fits `alg`.
//!
//! Keys are proven usable by signing a throwaway JWT with them, so "accepted at
//! `add`" means "will sign at token time".

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use jwtagent::config::{Alg, AuthMethod, Grant, Profile};
use jwtagent::secret::Secret;

/// Shortest HMAC secret accepted for client_secret_jwt (RFC 7518 §3.2 wants a
/// key at least as long as the hash; 32 bytes covers HS256).
pub(crate) const MIN_HMAC_SECRET: usize = 32;

/// The kinds of private key private_key_jwt can sign with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
}

impl KeyKind {
    /// The algorithm used when the profile names none.
    pub fn default_alg(self) -> Alg {
        match self {
            KeyKind::Rsa => Alg::RS256,
            KeyKind::EcP256 => Alg::ES256,
            KeyKind::EcP384 => Alg::ES384,
            KeyKind::Ed25519 => Alg::EdDSA,
        }
    }

    fn fits(self, alg: Alg) -> bool {
        match self {
            KeyKind::Rsa => matches!(
                alg,
                Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512
            ),
            KeyKind::EcP256 => alg == Alg::ES256,
            KeyKind::EcP384 => alg == Alg::ES384,
            KeyKind::Ed25519 => alg == Alg::EdDSA,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            KeyKind::Rsa => "an RSA key (use RS256/384/512 or PS256/384/512)",
            KeyKind::EcP256 => "a P-256 EC key (use ES256)",
            KeyKind::EcP384 => "a P-384 EC key (use ES384)",
            KeyKind::Ed25519 => "an Ed25519 key (use EdDSA)",
        }
    }
}

pub(crate) fn jwt_alg(alg: Alg) -> Algorithm {
    match alg {
        Alg::HS256 => Algorithm::HS256,
        Alg::HS384 => Algorithm::HS384,
        Alg::HS512 => Algorithm::HS512,
        Alg::RS256 => Algorithm::RS256,
        Alg::RS384 => Algorithm::RS384,
        Alg::RS512 => Algorithm::RS512,
        Alg::PS256 => Algorithm::PS256,
        Alg::PS384 => Algorithm::PS384,
        Alg::PS512 => Algorithm::PS512,
        Alg::ES256 => Algorithm::ES256,
        Alg::ES384 => Algorithm::ES384,
        Alg::EdDSA => Algorithm::EdDSA,
    }
}

/// Why a secret or key cannot be used; each says what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error(
        "auth `none` sends no secret, but one was given; drop --secret-stdin/--secret-file/--key-file or choose another --auth"
    )]
    SecretWithoutAuth,
    #[error("this profile signs with a private key: give it with --key-file KEY.pem")]
    KeyMissing,
    #[error("GitHub signs app JWTs with RS256 only: give the app's RSA private key, not {0}")]
    GitHubNeedsRsa(&'static str),
    #[error(
        "{0} needs a client secret: give it with --secret-stdin or --secret-file FILE, or type it at the prompt"
    )]
    SecretMissing(AuthMethod),
    #[error("the client secret is empty")]
    EmptySecret,
    #[error(
        "the secret is a PEM private key, but auth is {0}; use --auth private_key_jwt with --key-file"
    )]
    PemAsSecret(AuthMethod),
    #[error(
        "client_secret_jwt needs a secret of at least {MIN_HMAC_SECRET} bytes to sign with HMAC, this one has {0}; ask the authorization server for a longer secret or use client_secret_basic"
    )]
    HmacSecretTooShort(usize),
    #[error("--alg {alg} does not fit the key: it is {kind}")]
    AlgDoesNotFit { alg: Alg, kind: &'static str },
    #[error("the key file is not a PEM private key (expected a -----BEGIN PRIVATE KEY----- block)")]
    NotPem,
    #[error(
        "this is a SEC1 EC key (BEGIN EC PRIVATE KEY); convert it to PKCS#8 first: openssl pkcs8 -topk8 -nocrypt -in key.pem -out key-pkcs8.pem"
    )]
    Sec1,
    #[error(
        "the private key is encrypted; decrypt it first: openssl pkcs8 -in key.pem -out key-plain.pem (jwtagent keeps it in the keyring instead)"
    )]
    Encrypted,
    #[error("this is an OpenSSH key; convert it to PKCS#8 PEM: ssh-keygen -p -m PKCS8 -f KEYFILE")]
    OpenSsh,
    #[error(
        "the key file holds a {0} , not a private key; give the private key (the authorization server gets the public one)"
    )]
    NotPrivate(String),
    #[error("cannot read the PKCS#1 RSA key: {0}")]
    Pkcs1(String),
    #[error(
        "the EC key is on a curve jwtagent cannot sign with (only P-256/ES256 and P-384/ES384; P-521 is not supported)"
    )]
    UnsupportedCurve,
    #[error(
        "the PKCS#8 key is not an RSA, EC (P-256, P-384) or Ed25519 private key, or it is damaged"
    )]
    UnknownPkcs8,
    #[error(
        "unsupported PEM block {0:?}; give a PKCS#8 (BEGIN PRIVATE KEY) or PKCS#1 RSA (BEGIN RSA PRIVATE KEY) private key"
    )]
    UnsupportedBlock(String),
    #[error("the private key is damaged: it reads as {0} but cannot sign; export it again")]
    Damaged(&'static str),
    #[error("the key cannot sign with {alg}: {detail}")]
    CannotSign { alg: Alg, detail: String },
}

/// Checks `secret` against the profile's auth method and fills in `alg` when it
/// is left to the key (private_key_jwt) or defaults (client_secret_jwt: HS256).
/// The error says what is wrong and how to fix it.
pub(crate) fn check_secret(profile: &mut Profile, secret: Option<&Secret>) -> Result<(), KeyError> {
    if profile.signs_grant() {
        // The key signs the grant (and authenticates the client, if at all).
        let key = secret.ok_or(KeyError::KeyMissing)?;
        let kind = check_private_key(profile, key)?;
        if matches!(profile.grant, Grant::GithubApp(_)) && profile.alg != Some(Alg::RS256) {
            return Err(KeyError::GitHubNeedsRsa(kind.describe()));
        }
        return Ok(());
    }
    match (profile.auth, secret) {
        (AuthMethod::None, Some(_)) => Err(KeyError::SecretWithoutAuth),
        (AuthMethod::None, None) => Ok(()),
        (auth, None) if auth.uses_private_key() => Err(KeyError::KeyMissing),
        (auth, None) => Err(KeyError::SecretMissing(auth)),
        (AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost, Some(s)) => {
            if s.is_empty() {
                return Err(KeyError::EmptySecret);
            }
            if looks_like_pem(s) {
                return Err(KeyError::PemAsSecret(profile.auth));
            }
            Ok(())
        }
        (AuthMethod::ClientSecretJwt, Some(s)) => {
            if s.len() < MIN_HMAC_SECRET {
                return Err(KeyError::HmacSecretTooShort(s.len()));
            }
            let alg = *profile.alg.get_or_insert(Alg::HS256);
            test_sign(alg, &EncodingKey::from_secret(s.expose()))
        }
        // The key of a TLS client certificate: any key rustls can use
        // (checked against the certificate when the profile is added).
        (AuthMethod::TlsClientAuth | AuthMethod::SelfSignedTlsClientAuth, Some(s)) => {
            parse_private_key(s).map(|_| ())
        }
        (AuthMethod::PrivateKeyJwt, Some(s)) => check_private_key(profile, s).map(|_| ()),
    }
}

/// A private key that signs the profile's JWTs: `alg` fits it (or is taken
/// from it), and it signs.
fn check_private_key(profile: &mut Profile, secret: &Secret) -> Result<KeyKind, KeyError> {
    let (kind, key) = parse_private_key(secret)?;
    let alg = match profile.alg {
        Some(alg) if !kind.fits(alg) => {
            return Err(KeyError::AlgDoesNotFit {
                alg,
                kind: kind.describe(),
            });
        }
        Some(alg) => alg,
        None => kind.default_alg(),
    };
    profile.alg = Some(alg);
    test_sign(alg, &key)?;
    Ok(kind)
}

fn looks_like_pem(s: &Secret) -> bool {
    s.expose()
        .windows(b"-----BEGIN ".len())
        .any(|w| w == b"-----BEGIN ")
}

fn pem_label(s: &Secret) -> Option<String> {
    let text = std::str::from_utf8(s.expose()).ok()?;
    let start = text.find("-----BEGIN ")? + "-----BEGIN ".len();
    let end = text[start..].find("-----")?;
    Some(text[start..start + end].to_string())
}

/// Parses a PEM private key: PKCS#8 (RSA, P-256, P-384, Ed25519) or PKCS#1 RSA.
pub fn parse_private_key(s: &Secret) -> Result<(KeyKind, EncodingKey), KeyError> {
    let label = pem_label(s).ok_or(KeyError::NotPem)?;
    let pem = s.expose();
    match label.as_str() {
        "EC PRIVATE KEY" => Err(KeyError::Sec1),
        "ENCRYPTED PRIVATE KEY" => Err(KeyError::Encrypted),
        "OPENSSH PRIVATE KEY" => Err(KeyError::OpenSsh),
        "PUBLIC KEY" | "RSA PUBLIC KEY" | "CERTIFICATE" => {
            Err(KeyError::NotPrivate(label.to_lowercase()))
        }
        "RSA PRIVATE KEY" => EncodingKey::from_rsa_pem(pem)
            .map_err(|e| KeyError::Pkcs1(e.to_string()))
            .and_then(|key| checked(KeyKind::Rsa, key)),
        "PRIVATE KEY" => {
            if let Ok(key) = EncodingKey::from_rsa_pem(pem) {
                return checked(KeyKind::Rsa, key);
            }
            if let Ok(key) = EncodingKey::from_ed_pem(pem) {
                return checked(KeyKind::Ed25519, key);
            }
            if let Ok(key) = EncodingKey::from_ec_pem(pem) {
                // The curve decides the algorithm; a signature tells which.
                for (kind, alg) in [(KeyKind::EcP256, Alg::ES256), (KeyKind::EcP384, Alg::ES384)] {
                    if test_sign(alg, &key).is_ok() {
                        return Ok((kind, key));
                    }
                }
                return Err(KeyError::UnsupportedCurve);
            }
            Err(KeyError::UnknownPkcs8)
        }
        other => Err(KeyError::UnsupportedBlock(other.to_string())),
    }
}

/// Reading an RSA or Ed25519 key only decodes its PEM; the key itself is
/// parsed when it first signs. A damaged one (found by fuzzing: one changed
/// byte inside the DER) must be refused here, not at the first token request.
fn checked(kind: KeyKind, key: EncodingKey) -> Result<(KeyKind, EncodingKey), KeyError> {
    test_sign(kind.default_alg(), &key)
        .map(|()| (kind, key))
        .map_err(|_| KeyError::Damaged(kind.describe()))
}

fn test_sign(alg: Alg, key: &EncodingKey) -> Result<(), KeyError> {
    jsonwebtoken::encode(
        &Header::new(jwt_alg(alg)),
        &serde_json::json!({"probe": true}),
        key,
    )
    .map(|_| ())
    .map_err(|e| KeyError::CannotSign {
        alg,
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damaged_keys_are_refused_when_read_not_when_they_first_sign() {
        // Found by the pem_loader fuzz target: PKCS#8 RSA and Ed25519 keys with
        // a byte changed inside the DER decode, then fail to sign.
        for pem in [
            &include_bytes!("../testdata/damaged-rsa.pem")[..],
            &include_bytes!("../testdata/damaged-ed25519.pem")[..],
        ] {
            let err = parse_private_key(&Secret::new(pem.to_vec())).unwrap_err();
            assert!(matches!(err, KeyError::Damaged(_)), "{err}");
        }
    }

    #[test]
    fn keys_in_formats_we_cannot_use_say_how_to_convert_them() {
        let parse =
            |pem: &str| parse_private_key(&Secret::new(pem.as_bytes().to_vec())).unwrap_err();
        let block = |label: &str| format!("-----BEGIN {label}-----\nAAAA\n-----END {label}-----\n");
        assert_eq!(parse("not a key"), KeyError::NotPem);
        assert_eq!(parse(&block("EC PRIVATE KEY")), KeyError::Sec1);
        assert_eq!(parse(&block("ENCRYPTED PRIVATE KEY")), KeyError::Encrypted);
        assert_eq!(parse(&block("OPENSSH PRIVATE KEY")), KeyError::OpenSsh);
        assert_eq!(
            parse(&block("PUBLIC KEY")),
            KeyError::NotPrivate("public key".into())
        );
        assert!(
            parse(&block("EC PRIVATE KEY"))
                .to_string()
                .contains("openssl pkcs8 -topk8")
        );
    }
}
