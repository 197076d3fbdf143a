//! The profile model and `profiles.toml`: what a profile is, how it is written,
//! and the checks every profile passes before the agent accepts it.
//!
//! The file holds no secret: secrets live in the OS keyring under
//! service `jwtagent`, account `profile/NAME`. docs/config.md documents each field.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod grant;
mod profile;
mod raw;
mod values;

pub use grant::{Assertion, Exchange, GitHubApp, Grant, GrantKind};
pub use profile::Profile;
pub use raw::RawProfile;
use values::field_err;
pub use values::{
    Alg, AssertionAud, AuthMethod, DEFAULT_DPOP_ALG, FieldError, GENERATED_ALGS, GITHUB_API,
    MAX_NAME, RefreshBefore, StoreKind, check_endpoint, check_resources, check_scopes, is_loopback,
    validate_name,
};

/// The only config format version this jwtagent reads and writes.
pub const CONFIG_VERSION: u32 = 1;

/// Environment variable that overrides the config file's path.
pub const CONFIG_ENV: &str = "JWTAGENT_CONFIG";

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

/// Checks the version first, so a newer file gets "upgrade" rather than a
/// confusing complaint about a field this version does not know.
fn check_version(text: &str, path: &Path) -> Result<(), ConfigError> {
    #[derive(Deserialize)]
    struct VersionOnly {
        version: Option<toml::Value>,
    }
    let version = toml::from_str::<VersionOnly>(text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    match version.version {
        Some(toml::Value::Integer(v)) if v == i64::from(CONFIG_VERSION) => Ok(()),
        Some(toml::Value::Integer(v)) => Err(ConfigError::Version {
            path: path.to_path_buf(),
            found: u32::try_from(v).unwrap_or(u32::MAX),
        }),
        _ => Err(ConfigError::Parse {
            path: path.to_path_buf(),
            message: format!("missing `version = {CONFIG_VERSION}` at the top"),
        }),
    }
}

impl ConfigFile {
    /// Parses and validates the text of `path`.
    pub fn parse(text: &str, path: &Path) -> Result<ConfigFile, ConfigError> {
        check_version(text, path)?;
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
    use std::time::Duration;

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
