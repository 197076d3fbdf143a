//! Keys the agent makes and keeps: generating private keys (`keygen`, DPoP),
//! their public JWKs and RFC 7638 thumbprints, and DPoP proofs (RFC 9449).
//!
//! A private key exists only as a PKCS#8 PEM [`Secret`] on its way to and from
//! the keyring and as a signing key in memory; nothing here returns it except
//! [`generate`], whose caller stores it.

use crate::keys::{KeyError, KeyKind, jwt_alg, parse_private_key};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{self as sig, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jwtagent::config::Alg;
use jwtagent::secret::Secret;
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

pub(crate) use jwtagent::config::GENERATED_ALGS as GENERATED;

/// Why a key could not be made, read or used, or a DPoP request is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwkError {
    #[error("generating a {0} key failed")]
    Generate(Alg),
    #[error("jwtagent generates keys for {} only, not {alg}", names(&GENERATED))]
    NotGenerated { alg: Alg },
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("the key is not PEM")]
    NotPem,
    #[error("the key's PEM body is not base64")]
    NotBase64,
    #[error("the private key is unusable: {0}")]
    Rejected(String),
    #[error("the EC public key has an unexpected encoding")]
    EcEncoding,
    #[error(
        "--url {url:?} is not an absolute URL ({detail}); give the full https://host/path of the request"
    )]
    BadUrl { url: String, detail: String },
    #[error("--url {0:?} is not an http(s) URL; DPoP proofs are for HTTP requests")]
    NotHttp(String),
    #[error("--method {0:?} is not an HTTP method (GET, POST, ...)")]
    BadMethod(String),
    #[error("the system random generator failed")]
    Random,
    #[error("cannot sign the DPoP proof with {alg}: {detail}")]
    Sign { alg: Alg, detail: String },
}

/// A fresh private key for `alg`, as PKCS#8 PEM.
pub(crate) fn generate(alg: Alg) -> Result<Secret, JwkError> {
    let failed = |_| JwkError::Generate(alg);
    let der: Zeroizing<Vec<u8>> = Zeroizing::new(match alg {
        Alg::ES256 | Alg::ES384 => {
            let curve = if alg == Alg::ES256 {
                &sig::ECDSA_P256_SHA256_FIXED_SIGNING
            } else {
                &sig::ECDSA_P384_SHA384_FIXED_SIGNING
            };
            sig::EcdsaKeyPair::generate(curve)
                .and_then(|k| k.to_pkcs8v1())
                .map_err(failed)?
                .as_ref()
                .to_vec()
        }
        Alg::EdDSA => sig::Ed25519KeyPair::generate()
            .and_then(|k| k.to_pkcs8v1())
            .map_err(failed)?
            .as_ref()
            .to_vec(),
        Alg::RS256 => {
            let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .map_err(failed)?;
            AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&key)
                .map_err(failed)?
                .as_ref()
                .to_vec()
        }
        other => return Err(JwkError::NotGenerated { alg: other }),
    });
    Ok(pem("PRIVATE KEY", &der))
}

/// `ES256, ES384, EdDSA or RS256`.
pub(crate) fn names(algs: &[Alg]) -> String {
    let names: Vec<&str> = algs.iter().map(|a| a.as_str()).collect();
    match names.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// PEM armour, built in a buffer that is wiped on drop (the DER is a private key).
fn pem(label: &str, der: &[u8]) -> Secret {
    let mut b64 = Zeroizing::new(String::with_capacity(der.len().div_ceil(3) * 4));
    STANDARD.encode_string(der, &mut b64);
    let mut text = Zeroizing::new(String::with_capacity(b64.len() + b64.len() / 64 + 80));
    text.push_str(&format!("-----BEGIN {label}-----\n"));
    for line in b64.as_bytes().chunks(64) {
        text.push_str(std::str::from_utf8(line).unwrap_or_default());
        text.push('\n');
    }
    text.push_str(&format!("-----END {label}-----\n"));
    Secret::new(text.as_bytes().to_vec())
}

/// The DER inside the first PEM block of `pem`.
fn pem_der(pem: &Secret) -> Result<Zeroizing<Vec<u8>>, JwkError> {
    let text = std::str::from_utf8(pem.expose()).map_err(|_| JwkError::NotPem)?;
    let start = text.find("-----BEGIN ").ok_or(JwkError::NotPem)?;
    let body_start = start + text[start..].find('\n').ok_or(JwkError::NotPem)? + 1;
    let end = body_start
        + text[body_start..]
            .find("-----END ")
            .ok_or(JwkError::NotPem)?;
    let b64: Zeroizing<String> = Zeroizing::new(
        text[body_start..end]
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect(),
    );
    STANDARD
        .decode(b64.as_bytes())
        .map(Zeroizing::new)
        .map_err(|_| JwkError::NotBase64)
}

fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The public JWK (RFC 7517/7518/8037) of a private key in PEM: `kty` and the
/// public parameters only, in the order RFC 7638 hashes them.
pub(crate) fn public_jwk(pem: &Secret) -> Result<Map<String, Value>, JwkError> {
    let (kind, _) = parse_private_key(pem)?;
    let der = pem_der(pem)?;
    let rejected = |e: aws_lc_rs::error::KeyRejected| JwkError::Rejected(e.to_string());
    let jwk = match kind {
        KeyKind::EcP256 | KeyKind::EcP384 => {
            let (alg, crv, len) = if kind == KeyKind::EcP256 {
                (&sig::ECDSA_P256_SHA256_FIXED_SIGNING, "P-256", 32)
            } else {
                (&sig::ECDSA_P384_SHA384_FIXED_SIGNING, "P-384", 48)
            };
            let key = sig::EcdsaKeyPair::from_pkcs8(alg, &der).map_err(rejected)?;
            // Uncompressed point: 0x04 || x || y.
            let point = key.public_key().as_ref();
            if point.len() != 1 + 2 * len || point[0] != 4 {
                return Err(JwkError::EcEncoding);
            }
            members([
                ("crv", crv.into()),
                ("kty", "EC".into()),
                ("x", b64url(&point[1..=len])),
                ("y", b64url(&point[1 + len..])),
            ])
        }
        KeyKind::Ed25519 => {
            let key = sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).map_err(rejected)?;
            members([
                ("crv", "Ed25519".into()),
                ("kty", "OKP".into()),
                ("x", b64url(key.public_key().as_ref())),
            ])
        }
        KeyKind::Rsa => {
            let key = aws_lc_rs::rsa::KeyPair::from_pkcs8(&der)
                .or_else(|_| aws_lc_rs::rsa::KeyPair::from_der(&der))
                .map_err(rejected)?;
            let public = key.public_key();
            members([
                (
                    "e",
                    b64url(public.exponent().big_endian_without_leading_zero()),
                ),
                ("kty", "RSA".into()),
                (
                    "n",
                    b64url(public.modulus().big_endian_without_leading_zero()),
                ),
            ])
        }
    };
    Ok(jwk)
}

fn members<const N: usize>(pairs: [(&str, String); N]) -> Map<String, Value> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_string(), Value::String(v)))
        .collect()
}

/// RFC 7638 thumbprint: SHA-256 over the required members in lexicographic
/// order, without whitespace, base64url.
pub(crate) fn thumbprint(jwk: &Map<String, Value>) -> String {
    let required: &[&str] = match jwk.get("kty").and_then(Value::as_str) {
        Some("EC") => &["crv", "kty", "x", "y"],
        Some("OKP") => &["crv", "kty", "x"],
        Some("RSA") => &["e", "kty", "n"],
        _ => &["kty"],
    };
    // serde_json's Map keeps keys sorted (no preserve_order feature), so a map
    // of just the required members serialises in RFC 7638's order.
    let members: Map<String, Value> = required
        .iter()
        .filter_map(|k| jwk.get(*k).map(|v| (k.to_string(), v.clone())))
        .collect();
    let text = Value::Object(members).to_string();
    b64url(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes()).as_ref())
}

/// A JWKS to register with the authorization server: the public key with
/// `kid`, `alg` and `use`.
pub(crate) fn jwks(pem: &Secret, alg: Alg, kid: &str) -> Result<Value, JwkError> {
    let mut jwk = public_jwk(pem)?;
    jwk.insert("kid".into(), kid.into());
    jwk.insert("alg".into(), alg.as_str().into());
    jwk.insert("use".into(), "sig".into());
    Ok(json!({ "keys": [jwk] }))
}

/// The JWKS of a key with its certificate chain (RFC 7517 §4.7 `x5c`, and
/// `x5t#S256`): what a self_signed_tls_client_auth client registers (RFC
/// 8705 §2.2), or a private_key_jwt client with a certificate.
pub(crate) fn jwks_with_chain(
    pem: &Secret,
    alg: Option<Alg>,
    kid: Option<&str>,
    chain: &[Vec<u8>],
    x5t_s256: &str,
) -> Result<Value, JwkError> {
    let mut jwk = public_jwk(pem)?;
    if let Some(kid) = kid {
        jwk.insert("kid".into(), kid.into());
    }
    if let Some(alg) = alg {
        jwk.insert("alg".into(), alg.as_str().into());
    }
    jwk.insert("use".into(), "sig".into());
    let x5c: Vec<Value> = chain
        .iter()
        .map(|der| STANDARD.encode(der).into())
        .collect();
    jwk.insert("x5c".into(), x5c.into());
    jwk.insert("x5t#S256".into(), x5t_s256.into());
    Ok(json!({ "keys": [jwk] }))
}

/// The `htu` of a DPoP proof (RFC 9449 §4.2): the URL without query and
/// fragment. Only absolute http(s) URLs are accepted.
pub(crate) fn htu(url: &str) -> Result<String, JwkError> {
    let mut parsed = url::Url::parse(url).map_err(|e| JwkError::BadUrl {
        url: url.to_string(),
        detail: e.to_string(),
    })?;
    if !matches!(parsed.scheme(), "https" | "http") || parsed.host().is_none() {
        return Err(JwkError::NotHttp(url.to_string()));
    }
    parsed.set_query(None);
    parsed.set_fragment(None);
    Ok(parsed.to_string())
}

/// The `htm` of a DPoP proof: an HTTP method token (RFC 9110 §5.6.2),
/// upper-cased as every registered method is.
pub(crate) fn htm(method: &str) -> Result<String, JwkError> {
    let tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if method.is_empty() || !method.chars().all(tchar) {
        return Err(JwkError::BadMethod(method.to_string()));
    }
    Ok(method.to_ascii_uppercase())
}

/// A DPoP key held in memory: signs proofs, shows only its public half.
pub(crate) struct DpopKey {
    alg: Alg,
    key: jsonwebtoken::EncodingKey,
    jwk: Map<String, Value>,
    thumbprint: String,
}

impl std::fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopKey")
            .field("alg", &self.alg)
            .field("jkt", &self.thumbprint)
            .finish_non_exhaustive()
    }
}

impl DpopKey {
    /// Reads a stored DPoP key (PKCS#8 PEM) for `alg`.
    pub(crate) fn from_pem(pem: &Secret, alg: Alg) -> Result<DpopKey, JwkError> {
        let (_, key) = parse_private_key(pem)?;
        let jwk = public_jwk(pem)?;
        Ok(DpopKey {
            alg,
            key,
            thumbprint: thumbprint(&jwk),
            jwk,
        })
    }

    /// The RFC 7638 thumbprint of the public key: what a bound token's
    /// `cnf.jkt` holds.
    pub(crate) fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// A fresh proof for one request (RFC 9449 §4.2): `typ` dpop+jwt, the
    /// public `jwk`, a new `jti`, `htm`, `htu`, `iat`, and `ath` (the access
    /// token's SHA-256) and `nonce` when given.
    pub(crate) fn proof(
        &self,
        htm: &str,
        htu: &str,
        access_token: Option<&Secret>,
        nonce: Option<&str>,
    ) -> Result<Secret, JwkError> {
        let header = json!({"typ": "dpop+jwt", "alg": self.alg.as_str(), "jwk": self.jwk});
        let mut jti = [0u8; 16];
        aws_lc_rs::rand::fill(&mut jti).map_err(|_| JwkError::Random)?;
        let mut claims = json!({
            "jti": b64url(&jti),
            "htm": htm,
            "htu": htu,
            "iat": jwtagent::time::unix_now(),
        });
        if let Some(token) = access_token {
            let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.expose());
            claims["ath"] = b64url(hash.as_ref()).into();
        }
        if let Some(nonce) = nonce {
            claims["nonce"] = nonce.into();
        }
        let signing_input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let signature =
            jsonwebtoken::crypto::sign(signing_input.as_bytes(), &self.key, jwt_alg(self.alg))
                .map_err(|e| JwkError::Sign {
                    alg: self.alg,
                    detail: e.to_string(),
                })?;
        Ok(Secret::new(
            format!("{signing_input}.{signature}").into_bytes(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_load_sign_and_have_public_jwks_without_private_parts() {
        for alg in GENERATED {
            let pem = generate(alg).unwrap();
            let (kind, _) = parse_private_key(&pem).unwrap();
            assert_eq!(kind.default_alg(), alg, "{alg}");
            let jwk = public_jwk(&pem).unwrap();
            for private in ["d", "p", "q", "dp", "dq", "qi"] {
                assert!(!jwk.contains_key(private), "{alg}: {jwk:?}");
            }
            let key = DpopKey::from_pem(&pem, alg).unwrap();
            let proof = key
                .proof("GET", "https://api.example/x", None, None)
                .unwrap();
            assert_eq!(
                std::str::from_utf8(proof.expose())
                    .unwrap()
                    .split('.')
                    .count(),
                3
            );
            // Two keys for one alg differ.
            assert_ne!(
                thumbprint(&public_jwk(&generate(alg).unwrap()).unwrap()),
                thumbprint(&jwk)
            );
        }
    }

    #[test]
    fn thumbprint_matches_rfc7638_example() {
        // RFC 7638 §3.1.
        let jwk: Map<String, Value> = serde_json::from_str(r#"{
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        }"#).unwrap();
        assert_eq!(
            thumbprint(&jwk),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn htu_drops_query_and_fragment_and_htm_is_a_method_token() {
        assert_eq!(
            htu("https://api.example:8443/v1/items?page=2#top").unwrap(),
            "https://api.example:8443/v1/items"
        );
        assert!(htu("/v1/items").is_err());
        assert!(htu("ftp://host/x").is_err());
        assert_eq!(htm("post").unwrap(), "POST");
        assert!(htm("GET /").is_err());
        assert!(htm("").is_err());
    }

    #[test]
    fn proof_has_the_rfc9449_header_and_claims() {
        let key = DpopKey::from_pem(&generate(Alg::ES256).unwrap(), Alg::ES256).unwrap();
        let token = Secret::new(b"tok".to_vec());
        let part = |proof: &Secret, i: usize| -> Value {
            let text = std::str::from_utf8(proof.expose()).unwrap();
            let seg = text.split('.').nth(i).unwrap();
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(seg).unwrap()).unwrap()
        };
        let a = key
            .proof("GET", "https://api.example/x", Some(&token), Some("n-1"))
            .unwrap();
        let b = key
            .proof("GET", "https://api.example/x", None, None)
            .unwrap();
        let (header, claims) = (part(&a, 0), part(&a, 1));
        assert_eq!(header["typ"], "dpop+jwt");
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["jwk"]["kty"], "EC");
        assert!(header["jwk"].get("d").is_none());
        assert_eq!(claims["htm"], "GET");
        assert_eq!(claims["htu"], "https://api.example/x");
        assert_eq!(claims["nonce"], "n-1");
        // base64url(sha256("tok"))
        assert_eq!(claims["ath"], "GnZ0607njffhrEOak8P6jjyUV4TU3sn9jjARc4svHWI");
        assert!(part(&b, 1).get("ath").is_none());
        assert_ne!(claims["jti"], part(&b, 1)["jti"]);
        assert_eq!(
            thumbprint(header["jwk"].as_object().unwrap()),
            key.thumbprint()
        );
    }
}
