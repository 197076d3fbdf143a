//! The values a profile is made of (client authentication methods,
//! algorithms, stores, durations), the checks of single fields, and the error
//! that names the field.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::duration::{format_duration, parse_duration};

/// Longest profile name.
pub const MAX_NAME: usize = 64;

/// Token request parameters jwtagent sets itself; `--param` may not override them.
pub(super) const RESERVED_PARAMS: &[&str] = &[
    "grant_type",
    "client_id",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
    "scope",
    "resource",
    "audience",
    "refresh_token",
];

/// What a sink file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SinkFormat {
    /// The access token alone (kubectl's `tokenFile`,
    /// `AZURE_FEDERATED_TOKEN_FILE`).
    #[default]
    Token,
    /// `{"access_token", "token_type", "expires_at"}`.
    Json,
}

impl SinkFormat {
    pub const ALL: [SinkFormat; 2] = [SinkFormat::Token, SinkFormat::Json];

    pub fn as_str(self) -> &'static str {
        match self {
            SinkFormat::Token => "token",
            SinkFormat::Json => "json",
        }
    }
}

impl FromStr for SinkFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        SinkFormat::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| format!("unknown sink format {s:?} (token or json)"))
    }
}

impl fmt::Display for SinkFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn is_token(format: &SinkFormat) -> bool {
    *format == SinkFormat::Token
}

/// A file the agent keeps holding the profile's current access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sink {
    /// Absolute path of the file.
    pub path: std::path::PathBuf,
    #[serde(default, skip_serializing_if = "is_token")]
    pub format: SinkFormat,
    /// Left in place when the agent stops, locks or the profile signs out
    /// (a removed profile's sinks go in any case).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep: bool,
}

/// The secret store backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreKind {
    /// Secret Service when one answers on D-Bus, else the kernel keyutils keyring.
    #[default]
    Auto,
    /// A Secret Service (GNOME Keyring, KWallet, KeePassXC) on the session bus.
    SecretService,
    /// The Linux kernel keyutils keyring (entries do not survive a reboot).
    Keyutils,
    /// jwtagent's own encrypted file under `$XDG_DATA_HOME/jwtagent/`, sealed
    /// with a passphrase (`jwtagent unlock`).
    File,
    /// macOS Keychain.
    Keychain,
    /// Windows Credential Manager.
    WindowsCredentialManager,
}

impl StoreKind {
    /// Every store, in the order help lists them.
    pub const ALL: [StoreKind; 6] = [
        StoreKind::Auto,
        StoreKind::SecretService,
        StoreKind::Keyutils,
        StoreKind::File,
        StoreKind::Keychain,
        StoreKind::WindowsCredentialManager,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Auto => "auto",
            StoreKind::SecretService => "secret-service",
            StoreKind::Keyutils => "keyutils",
            StoreKind::File => "file",
            StoreKind::Keychain => "keychain",
            StoreKind::WindowsCredentialManager => "windows-credential-manager",
        }
    }
}

impl fmt::Display for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StoreKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(StoreKind::Auto),
            "secret-service" => Ok(StoreKind::SecretService),
            "keyutils" => Ok(StoreKind::Keyutils),
            "file" => Ok(StoreKind::File),
            "keychain" => Ok(StoreKind::Keychain),
            "windows-credential-manager" => Ok(StoreKind::WindowsCredentialManager),
            _ => Err(format!(
                "unknown store {s:?}: use auto, secret-service, keyutils, file, keychain or windows-credential-manager"
            )),
        }
    }
}

/// The public GitHub API.
pub const GITHUB_API: &str = "https://api.github.com";

/// Algorithms the agent generates keys for (`keygen`, DPoP keys).
pub const GENERATED_ALGS: [Alg; 4] = [Alg::ES256, Alg::ES384, Alg::EdDSA, Alg::RS256];

/// The DPoP key's algorithm when a profile names none.
pub const DEFAULT_DPOP_ALG: Alg = Alg::ES256;

/// Client authentication method (RFC 6749 §2.3, RFC 7523 §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    #[default]
    ClientSecretBasic,
    ClientSecretPost,
    ClientSecretJwt,
    PrivateKeyJwt,
    /// RFC 8705 §2.1: a client certificate from a CA the server trusts.
    TlsClientAuth,
    /// RFC 8705 §2.2: a self-signed client certificate the client registered.
    SelfSignedTlsClientAuth,
    None,
}

impl AuthMethod {
    /// Every client authentication method, in the order help lists them.
    pub const ALL: [AuthMethod; 7] = [
        AuthMethod::ClientSecretBasic,
        AuthMethod::ClientSecretPost,
        AuthMethod::ClientSecretJwt,
        AuthMethod::PrivateKeyJwt,
        AuthMethod::TlsClientAuth,
        AuthMethod::SelfSignedTlsClientAuth,
        AuthMethod::None,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::ClientSecretJwt => "client_secret_jwt",
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
            AuthMethod::TlsClientAuth => "tls_client_auth",
            AuthMethod::SelfSignedTlsClientAuth => "self_signed_tls_client_auth",
            AuthMethod::None => "none",
        }
    }

    /// Whether the client authenticates with a TLS client certificate.
    pub fn uses_mtls(self) -> bool {
        matches!(
            self,
            AuthMethod::TlsClientAuth | AuthMethod::SelfSignedTlsClientAuth
        )
    }

    /// Whether the keyring holds a private key (not a shared secret).
    pub fn uses_private_key(self) -> bool {
        self == AuthMethod::PrivateKeyJwt || self.uses_mtls()
    }

    /// Whether the method signs a JWT assertion.
    pub fn uses_assertion(self) -> bool {
        matches!(
            self,
            AuthMethod::ClientSecretJwt | AuthMethod::PrivateKeyJwt
        )
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AuthMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "client_secret_basic" => Ok(AuthMethod::ClientSecretBasic),
            "client_secret_post" => Ok(AuthMethod::ClientSecretPost),
            "client_secret_jwt" => Ok(AuthMethod::ClientSecretJwt),
            "private_key_jwt" => Ok(AuthMethod::PrivateKeyJwt),
            "tls_client_auth" => Ok(AuthMethod::TlsClientAuth),
            "self_signed_tls_client_auth" => Ok(AuthMethod::SelfSignedTlsClientAuth),
            "none" => Ok(AuthMethod::None),
            _ => Err(format!(
                "unknown auth method {s:?}: use client_secret_basic, client_secret_post, client_secret_jwt, private_key_jwt, tls_client_auth, self_signed_tls_client_auth or none"
            )),
        }
    }
}

/// JWS algorithms for client assertions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

impl Alg {
    pub const ALL: [Alg; 12] = [
        Alg::HS256,
        Alg::HS384,
        Alg::HS512,
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
        Alg::ES256,
        Alg::ES384,
        Alg::EdDSA,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Alg::HS256 => "HS256",
            Alg::HS384 => "HS384",
            Alg::HS512 => "HS512",
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::EdDSA => "EdDSA",
        }
    }

    /// HMAC algorithms (client_secret_jwt).
    pub fn is_hmac(self) -> bool {
        matches!(self, Alg::HS256 | Alg::HS384 | Alg::HS512)
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Alg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Alg::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown alg {s:?}: use HS256/384/512 (client_secret_jwt) or RS256/384/512, PS256/384/512, ES256/384, EdDSA (private_key_jwt)"
                )
            })
    }
}

/// `aud` of client assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssertionAud {
    /// The issuer identifier (the default when the issuer is known).
    Issuer,
    /// The token endpoint URL.
    TokenEndpoint,
    /// An explicit value.
    Url(String),
}

impl fmt::Display for AssertionAud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AssertionAud::Issuer => f.write_str("issuer"),
            AssertionAud::TokenEndpoint => f.write_str("token-endpoint"),
            AssertionAud::Url(url) => f.write_str(url),
        }
    }
}

impl FromStr for AssertionAud {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "issuer" => Ok(AssertionAud::Issuer),
            "token-endpoint" => Ok(AssertionAud::TokenEndpoint),
            _ => match url::Url::parse(s) {
                Ok(_) => Ok(AssertionAud::Url(s.to_string())),
                Err(e) => Err(format!(
                    "invalid assertion audience {s:?}: use auto, issuer, token-endpoint or an absolute URL ({e})"
                )),
            },
        }
    }
}

/// When to refresh ahead of expiry: a fixed time, or a share of the lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshBefore {
    Duration(Duration),
    /// Percent of the token's lifetime, 1–99.
    Percent(u8),
}

impl fmt::Display for RefreshBefore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefreshBefore::Duration(d) => f.write_str(&format_duration(*d)),
            RefreshBefore::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl FromStr for RefreshBefore {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(pct) = s.trim().strip_suffix('%') {
            return match pct.trim().parse::<u8>() {
                Ok(p @ 1..=99) => Ok(RefreshBefore::Percent(p)),
                _ => Err(format!(
                    "invalid refresh-before {s:?}: a percentage must be between 1% and 99%"
                )),
            };
        }
        match parse_duration(s)? {
            d if d.is_zero() => Err(format!(
                "invalid refresh-before {s:?}: must be more than zero"
            )),
            d => Ok(RefreshBefore::Duration(d)),
        }
    }
}

/// Serializes a type through its `Display`/`FromStr` as a plain string.
macro_rules! string_serde {
    ($($t:ty),*) => {$(
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}
string_serde!(Alg, AssertionAud, RefreshBefore);

/// A profile field that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The field as named in profiles.toml.
    pub field: &'static str,
    pub message: String,
}

pub(super) fn field_err(field: &'static str, message: impl Into<String>) -> FieldError {
    FieldError {
        field,
        message: message.into(),
    }
}

/// Checks scopes, at `add` and on every `token` request that names its own:
/// RFC 6749 §3.3 scope-tokens, one per entry.
pub fn check_scopes(scopes: &[String]) -> Result<(), FieldError> {
    for scope in scopes {
        // RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
        let valid = !scope.is_empty()
            && scope
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b));
        if !valid {
            return Err(field_err(
                "scopes",
                format!(
                    "{scope:?} is not a valid scope (printable ASCII without spaces, quotes or backslashes; repeat --scope for several)"
                ),
            ));
        }
    }
    Ok(())
}

/// Checks RFC 8707 resource indicators: absolute URIs without a fragment.
pub fn check_resources(resources: &[String]) -> Result<(), FieldError> {
    for resource in resources {
        let url = url::Url::parse(resource).map_err(|e| {
            field_err(
                "resources",
                format!("{resource:?} is not an absolute URI ({e}); RFC 8707 resources are absolute URIs"),
            )
        })?;
        if url.fragment().is_some() {
            return Err(field_err(
                "resources",
                format!("{resource:?} has a #fragment, which RFC 8707 forbids"),
            ));
        }
    }
    Ok(())
}

/// Checks a profile name: 1–64 characters of `A-Z a-z 0-9 . _ -`, starting with
/// a letter or digit (so it is safe in a keyring account name, a file name, and
/// never mistaken for a flag).
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok_start = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !ok_start || !ok_chars || name.len() > MAX_NAME {
        return Err(format!(
            "invalid profile name {name:?}: use 1-{MAX_NAME} letters, digits, '.', '_' or '-', starting with a letter or digit"
        ));
    }
    Ok(())
}

/// Whether `host` is a loopback host: `localhost`, 127.0.0.0/8 or ::1.
pub fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => {
            d.eq_ignore_ascii_case("localhost") || d.to_ascii_lowercase().ends_with(".localhost")
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Parses an endpoint URL: absolute, `https://` unless the host is loopback,
/// no fragment, no credentials.
pub fn check_endpoint(field: &'static str, text: &str) -> Result<url::Url, FieldError> {
    let url = url::Url::parse(text)
        .map_err(|e| field_err(field, format!("{text:?} is not a valid absolute URL ({e})")))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(field_err(
                field,
                format!(
                    "{text:?} uses http://; tokens and secrets must travel over https:// (plain http is allowed only for loopback hosts: localhost, 127.0.0.0/8, ::1)"
                ),
            ));
        }
        other => {
            return Err(field_err(
                field,
                format!("{text:?} has scheme {other:?}; use an https:// URL"),
            ));
        }
    }
    if url.host().is_none() {
        return Err(field_err(field, format!("{text:?} has no host")));
    }
    if url.fragment().is_some() {
        return Err(field_err(
            field,
            format!("{text:?} has a #fragment; remove it"),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(field_err(
            field,
            format!(
                "{} must not carry credentials in the URL; jwtagent keeps secrets in the keyring",
                field
            ),
        ));
    }
    Ok(url)
}
