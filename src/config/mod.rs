//! The profile model and `profiles.toml`: what a profile is, how it is written,
//! and the checks every profile passes before the agent accepts it.
//!
//! The file holds no secret: secrets live in the OS keyring under
//! service `jwtagent`, account `profile/NAME`. docs/config.md documents each field.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use crate::duration::{format_duration, parse_duration};

mod grant;
mod profile;
mod raw;

pub use grant::{Assertion, Exchange, GitHubApp, Grant, GrantKind};
pub use profile::Profile;
pub use raw::RawProfile;

/// The only config format version this jwtagent reads and writes.
pub const CONFIG_VERSION: u32 = 1;

/// Environment variable that overrides the config file's path.
pub const CONFIG_ENV: &str = "JWTAGENT_CONFIG";

/// Longest profile name.
pub const MAX_NAME: usize = 64;

/// Token request parameters jwtagent sets itself; `--param` may not override them.
const RESERVED_PARAMS: &[&str] = &[
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

/// `profiles.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Format version; always [`CONFIG_VERSION`].
    pub version: u32,
    /// Which secret store the agent uses (`jwtagent agent --store` overrides it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreKind>,
    /// Profiles by name.
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
}

impl Default for ConfigFile {
    fn default() -> Self {
        ConfigFile {
            version: CONFIG_VERSION,
            store: None,
            profiles: BTreeMap::new(),
        }
    }
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
    /// macOS Keychain.
    Keychain,
    /// Windows Credential Manager.
    WindowsCredentialManager,
}

impl StoreKind {
    /// Every store, in the order help lists them.
    pub const ALL: [StoreKind; 5] = [
        StoreKind::Auto,
        StoreKind::SecretService,
        StoreKind::Keyutils,
        StoreKind::Keychain,
        StoreKind::WindowsCredentialManager,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Auto => "auto",
            StoreKind::SecretService => "secret-service",
            StoreKind::Keyutils => "keyutils",
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
            "keychain" => Ok(StoreKind::Keychain),
            "windows-credential-manager" => Ok(StoreKind::WindowsCredentialManager),
            _ => Err(format!(
                "unknown store {s:?}: use auto, secret-service, keyutils, keychain or windows-credential-manager"
            )),
        }
    }
}

/// Where profile `name`'s table starts in a config's text (its first
/// mention, as `[profiles.NAME]` or a quoted form); the end when not found.
fn position_of(text: &str, name: &str) -> usize {
    [
        format!("[profiles.{name}"),
        format!("[profiles.\"{name}\""),
        format!("[profiles.'{name}'"),
    ]
    .iter()
    .filter_map(|header| text.find(header.as_str()))
    .min()
    .unwrap_or(text.len())
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

fn field_err(field: &'static str, message: impl Into<String>) -> FieldError {
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

/// Why the config file could not be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {message}")]
    Read { path: PathBuf, message: String },
    /// The file or its directory could be changed by another user.
    #[error("refusing config {path}: {message}")]
    Unsafe { path: PathBuf, message: String },
    #[error(
        "config file {path} is not valid: {message}\nFix or move the file; jwtagent never overwrites a config it cannot read."
    )]
    Parse { path: PathBuf, message: String },
    #[error(
        "config file {path} has version {found}, but this jwtagent reads version {CONFIG_VERSION}; upgrade jwtagent or fix the file"
    )]
    Version { path: PathBuf, found: u32 },
    #[error(
        "config file {path}: profile {profile:?}: {error}\nFix the file; jwtagent never overwrites a config it cannot read."
    )]
    Invalid {
        path: PathBuf,
        profile: String,
        error: FieldError,
    },
}

/// A config file larger than this is not read (a profile is a few hundred
/// bytes).
const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// The config file (or its directory) must be the user's or root's, and not
/// writable by group or others (a shared directory with the sticky bit is
/// fine: others cannot replace a file of ours in it).
fn check_owner_and_mode(
    path: &Path,
    meta: &std::fs::Metadata,
    is_dir: bool,
) -> Result<(), ConfigError> {
    use std::os::unix::fs::MetadataExt;
    let uid = rustix::process::geteuid().as_raw();
    let mode = meta.mode() & 0o7777;
    let what = if is_dir { "directory" } else { "file" };
    let message = if meta.uid() != uid && meta.uid() != 0 {
        format!(
            "the config {what} is owned by uid {}, not by you (uid {uid}); another user could send your secrets to a server of theirs. Move it away and add your profiles again",
            meta.uid()
        )
    } else if mode & 0o022 != 0 && !(is_dir && mode & 0o1000 != 0) {
        format!(
            "the config {what} has mode {mode:04o}, writable by others, who could send your secrets to a server of theirs; check it, then run `chmod go-w {}`",
            path.display()
        )
    } else {
        return Ok(());
    };
    Err(ConfigError::Unsafe {
        path: path.to_path_buf(),
        message,
    })
}

impl ConfigFile {
    /// Parses and validates the text of `path`.
    pub fn parse(text: &str, path: &Path) -> Result<ConfigFile, ConfigError> {
        // Check the version first, so a newer file gets "upgrade" rather than a
        // confusing complaint about a field this version does not know.
        #[derive(Deserialize)]
        struct VersionOnly {
            version: Option<toml::Value>,
        }
        let version = toml::from_str::<VersionOnly>(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        match version.version {
            Some(toml::Value::Integer(v)) if v == i64::from(CONFIG_VERSION) => {}
            Some(toml::Value::Integer(v)) => {
                return Err(ConfigError::Version {
                    path: path.to_path_buf(),
                    found: u32::try_from(v).unwrap_or(u32::MAX),
                });
            }
            _ => {
                return Err(ConfigError::Parse {
                    path: path.to_path_buf(),
                    message: format!("missing `version = {CONFIG_VERSION}` at the top"),
                });
            }
        }
        // Read flat, then each profile typed and checked: a field of another
        // grant is an invalid profile, named, like any other.
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            version: u32,
            #[serde(default)]
            store: Option<StoreKind>,
            #[serde(default)]
            profiles: BTreeMap<String, RawProfile>,
        }
        let raw: Raw = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut config = ConfigFile {
            version: raw.version,
            store: raw.store,
            profiles: BTreeMap::new(),
        };
        // Every bad profile is found; the one reported is the first in the
        // file, where the user starts reading.
        let mut first_bad: Option<(usize, String, FieldError)> = None;
        for (name, raw) in raw.profiles {
            let checked = validate_name(&name)
                .map_err(|message| FieldError {
                    field: "name",
                    message,
                })
                .and_then(|()| Profile::try_from(raw))
                .and_then(|profile| profile.validate().map(|()| profile));
            match checked {
                Ok(profile) => {
                    config.profiles.insert(name, profile);
                }
                Err(error) => {
                    let at = position_of(text, &name);
                    if first_bad.as_ref().is_none_or(|(first, _, _)| at < *first) {
                        first_bad = Some((at, name, error));
                    }
                }
            }
        }
        if let Some((_, name, error)) = first_bad {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                profile: name,
                error,
            });
        }
        // A circle or an over-deep chain (a hand edit: `add` refuses both).
        if let Err((name, chain)) = crate::chain::check_all(&config.profiles) {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                profile: name,
                error: field_err(chain.field(), chain.to_string()),
            });
        }
        Ok(config)
    }

    /// Reads `path`; a missing file is an empty config.
    ///
    /// Like ssh with `~/.ssh/config`, a file or directory that another user
    /// could write (or a file that is another user's, also through a symlink)
    /// is refused: whoever can edit the config can send the secrets anywhere.
    pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
        use std::io::Read;
        let read_err = |e: std::io::Error| ConfigError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        match std::fs::metadata(dir) {
            Ok(meta) => check_owner_and_mode(dir, &meta, true)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(ConfigFile::default());
            }
            Err(e) => return Err(read_err(e)),
        }
        let file = match std::fs::File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(ConfigFile::default());
            }
            Err(e) => return Err(read_err(e)),
        };
        // What was opened, after any symlink: the checks cannot be raced.
        let meta = file.metadata().map_err(read_err)?;
        check_owner_and_mode(path, &meta, false)?;
        let mut text = String::new();
        file.take(MAX_CONFIG_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(read_err)?;
        if text.len() as u64 > MAX_CONFIG_BYTES {
            return Err(ConfigError::Parse {
                path: path.to_path_buf(),
                message: format!("larger than {MAX_CONFIG_BYTES} bytes"),
            });
        }
        ConfigFile::parse(&text, path)
    }

    /// The file's text, with a header saying what it is.
    pub fn to_toml(&self) -> String {
        let body = toml::to_string_pretty(self).unwrap_or_else(|e| {
            // Every field is a string, number, table or array: unreachable.
            format!("# cannot serialize: {e}\n")
        });
        format!(
            "# jwtagent profiles (docs/config.md). Written by the agent: use `jwtagent add`/`remove`.\n# No secret is kept here; secrets live in the OS keyring.\n{body}"
        )
    }
}

/// The config file's path: `JWTAGENT_CONFIG`, else
/// `$XDG_CONFIG_HOME/jwtagent/profiles.toml` (`~/.config/jwtagent/profiles.toml`).
pub fn config_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(CONFIG_ENV).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    Some(crate::paths::xdg_dir("XDG_CONFIG_HOME", ".config")?.join("jwtagent/profiles.toml"))
}

#[cfg(test)]
mod tests {

    #[test]
    fn every_named_value_is_written_as_it_is_read() {
        for kind in StoreKind::ALL {
            assert_eq!(kind.to_string().parse::<StoreKind>(), Ok(kind));
        }
        for grant in GrantKind::ALL {
            assert_eq!(grant.to_string().parse::<GrantKind>(), Ok(grant));
        }
        for auth in AuthMethod::ALL {
            assert_eq!(auth.to_string().parse::<AuthMethod>(), Ok(auth));
        }
        for alg in Alg::ALL {
            assert_eq!(alg.to_string().parse::<Alg>(), Ok(alg));
        }
    }

    use super::*;

    fn basic() -> Profile {
        Profile::new(
            "https://idp.example/token",
            "ci",
            AuthMethod::ClientSecretBasic,
        )
    }

    fn field_of(p: &Profile) -> &'static str {
        p.validate().unwrap_err().field
    }

    #[test]
    fn a_plain_https_profile_is_valid() {
        basic().validate().unwrap();
    }

    #[test]
    fn http_is_refused_off_loopback_and_allowed_on_it() {
        let mut p = basic();
        p.token_url = Some("http://idp.example/token".into());
        let e = p.validate().unwrap_err();
        assert_eq!(e.field, "token_url");
        assert!(e.message.contains("https://"), "{e}");
        for ok in [
            "http://localhost:8080/token",
            "http://127.0.0.5/token",
            "http://[::1]:9/token",
        ] {
            p.token_url = Some(ok.into());
            p.validate().unwrap();
        }
    }

    #[test]
    fn issuer_and_token_url_are_exclusive_and_one_is_required() {
        let mut p = basic();
        p.issuer = Some("https://idp.example".into());
        assert_eq!(field_of(&p), "token_url");
        p.issuer = None;
        p.token_url = None;
        assert_eq!(field_of(&p), "token_url");
    }

    #[test]
    fn malformed_url_is_refused() {
        let mut p = basic();
        p.token_url = Some("not a url".into());
        assert_eq!(field_of(&p), "token_url");
    }

    #[test]
    fn alg_must_fit_the_auth_method() {
        let mut p = basic();
        p.alg = Some(Alg::RS256);
        assert_eq!(field_of(&p), "alg");
        p.auth = AuthMethod::ClientSecretJwt;
        assert_eq!(field_of(&p), "alg");
        p.alg = Some(Alg::HS384);
        p.validate().unwrap();
        p.auth = AuthMethod::PrivateKeyJwt;
        assert_eq!(field_of(&p), "alg");
    }

    #[test]
    fn reserved_params_and_bad_scopes_are_refused() {
        let mut p = basic();
        p.params.insert("grant_type".into(), "x".into());
        assert_eq!(field_of(&p), "params");
        let mut p = basic();
        p.scopes = vec!["a b".into()];
        assert_eq!(field_of(&p), "scopes");
    }

    #[test]
    fn names_are_restricted() {
        validate_name("github-ci.prod_1").unwrap();
        for bad in ["", "-x", ".x", "a/b", "a b", &"x".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn refresh_before_reads_durations_and_percentages() {
        assert_eq!(
            "5m".parse::<RefreshBefore>().unwrap(),
            RefreshBefore::Duration(Duration::from_secs(300))
        );
        assert_eq!(
            "20%".parse::<RefreshBefore>().unwrap(),
            RefreshBefore::Percent(20)
        );
        assert!("0%".parse::<RefreshBefore>().is_err());
        assert!("100%".parse::<RefreshBefore>().is_err());
        assert!("0s".parse::<RefreshBefore>().is_err());
    }

    #[test]
    fn config_round_trips_through_toml() {
        let mut config = ConfigFile::default();
        let mut p = basic();
        p.scopes = vec!["read".into(), "write".into()];
        p.refresh_before = Some(RefreshBefore::Percent(10));
        p.params.insert("tenant".into(), "t1".into());
        config.profiles.insert("api".into(), p);
        let text = config.to_toml();
        let back = ConfigFile::parse(&text, Path::new("/x.toml")).unwrap();
        assert_eq!(back, config);
    }

    #[test]
    fn parse_errors_name_the_file_and_the_line() {
        let e = ConfigFile::parse(
            "version = 1\n[profiles.a]\nclient_id = \n",
            Path::new("/c/p.toml"),
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("/c/p.toml") && text.contains("line 3"),
            "{text}"
        );
    }

    #[test]
    fn invalid_profile_errors_name_file_profile_and_field() {
        let text = "version = 1\n[profiles.api]\ntoken_url = \"http://idp.example/t\"\nclient_id = \"c\"\nauth = \"client_secret_basic\"\n";
        let e = ConfigFile::parse(text, Path::new("/c/p.toml")).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("/c/p.toml") && msg.contains("\"api\"") && msg.contains("token_url"),
            "{msg}"
        );
    }

    #[test]
    fn the_first_bad_profile_in_the_file_is_reported_and_auth_defaults_to_basic() {
        // Alphabetically "alpha" comes first; in the file, "zulu" does.
        let text = "version = 1\n[profiles.zulu]\ntoken_url = \"ftp://z\"\nclient_id = \"z\"\n\
                    [profiles.alpha]\ntoken_url = \"ftp://a\"\nclient_id = \"a\"\n";
        let e = ConfigFile::parse(text, Path::new("/c/p.toml")).unwrap_err();
        assert!(e.to_string().contains("\"zulu\""), "{e}");
        // A hand-written profile without `auth` is client_secret_basic, as
        // `add` makes it.
        let text = "version = 1\n[profiles.api]\ntoken_url = \"https://idp.example/t\"\nclient_id = \"c\"\n";
        let config = ConfigFile::parse(text, Path::new("/c/p.toml")).unwrap();
        assert_eq!(config.profiles["api"].auth, AuthMethod::ClientSecretBasic);
    }

    #[test]
    fn unknown_fields_and_other_versions_are_refused() {
        let e = ConfigFile::parse("version = 1\nbogus = 3\n", Path::new("/p")).unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        let e = ConfigFile::parse("version = 2\n", Path::new("/p")).unwrap_err();
        assert!(matches!(e, ConfigError::Version { found: 2, .. }));
        let e = ConfigFile::parse("[profiles]\n", Path::new("/p")).unwrap_err();
        assert!(e.to_string().contains("version = 1"), "{e}");
    }

    /// Every shape of profile the previous release (0.1) wrote, as it wrote
    /// them to profiles.toml and to the wire: read, and written back the same.
    #[test]
    fn every_shape_the_previous_release_wrote_is_read_and_written_the_same() {
        let text = include_str!("written-by-0.1.toml");
        let config = ConfigFile::parse(text, Path::new("/c/profiles.toml")).unwrap();
        assert_eq!(config.profiles.len(), 12);
        assert_eq!(config.to_toml(), text);
        let json: serde_json::Value =
            serde_json::from_str(include_str!("written-by-0.1.json")).unwrap();
        assert_eq!(serde_json::to_value(&config.profiles).unwrap(), json);
        let from_json: BTreeMap<String, Profile> = serde_json::from_value(json).unwrap();
        assert_eq!(from_json, config.profiles);
        let grants: Vec<_> = config.profiles.values().map(|p| p.grant.kind()).collect();
        use GrantKind::*;
        assert_eq!(
            grants,
            [
                JwtBearer,
                ClientCredentials,
                AuthorizationCode,
                AuthorizationCode,
                DeviceCode,
                TokenExchange,
                GithubApp,
                JwtBearer,
                JwtBearer,
                ClientCredentials,
                ClientCredentials,
                DeviceCode,
            ]
        );
    }
}
