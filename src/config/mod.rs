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
pub use values::{
    Alg, AssertionAud, AuthMethod, DEFAULT_DPOP_ALG, FieldError, GENERATED_ALGS, GITHUB_API,
    MAX_NAME, RefreshBefore, Sink, SinkFormat, StoreKind, check_endpoint, check_resources,
    check_scopes, is_loopback, validate_name,
};

/// Profiles by name, each shared: a copy of the map (a write, a check of
/// every chain) copies no profile.
pub type ProfileMap = BTreeMap<String, std::sync::Arc<Profile>>;

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
    pub profiles: ProfileMap,
    /// The profiles of the file that are not valid, by name: left out of
    /// `profiles` (the others are served), reported, and written back as
    /// they were read.
    #[serde(skip)]
    pub skipped: BTreeMap<String, Skipped>,
}

/// A profile of the file that is not valid.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    /// What is wrong, and where: the file, the line and column where the
    /// profile's table starts, the field and why.
    pub reason: String,
    /// The profile's table as read, written back unchanged but for the
    /// order of its keys when the agent rewrites the file.
    pub table: toml::Value,
}

impl Default for ConfigFile {
    fn default() -> Self {
        ConfigFile {
            version: CONFIG_VERSION,
            store: None,
            profiles: BTreeMap::new(),
            skipped: BTreeMap::new(),
        }
    }
}

impl Skipped {
    /// Which keyring entries hold its secrets, if its table says so (as a
    /// valid profile's `generation` does), else the first.
    pub fn generation(&self) -> u32 {
        self.table
            .get("generation")
            .and_then(toml::Value::as_integer)
            .and_then(|g| u32::try_from(g).ok())
            .unwrap_or(0)
    }
}

/// Line and column (from 1) of byte `at` of `text`.
fn line_column(text: &str, at: usize) -> (usize, usize) {
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
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

/// The file's top level, as it is checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    version: u32,
    #[serde(default)]
    store: Option<StoreKind>,
    #[serde(default)]
    profiles: BTreeMap<String, toml::Value>,
}

/// Parses the text once, and checks the version first, so a newer file gets
/// "upgrade" rather than a confusing complaint about a field this version
/// does not know.
fn parse_raw(text: &str, path: &Path) -> Result<Raw, ConfigError> {
    let parse_err = |message: String| ConfigError::Parse {
        path: path.to_path_buf(),
        message,
    };
    let table: toml::Table = toml::from_str(text).map_err(|e| parse_err(e.to_string()))?;
    match table.get("version") {
        Some(toml::Value::Integer(v)) if *v == i64::from(CONFIG_VERSION) => {}
        Some(toml::Value::Integer(v)) => {
            return Err(ConfigError::Version {
                path: path.to_path_buf(),
                found: u32::try_from(*v).unwrap_or(u32::MAX),
            });
        }
        _ => {
            return Err(parse_err(format!(
                "missing `version = {CONFIG_VERSION}` at the top"
            )));
        }
    }
    // Checked from the parsed table (the text is not parsed again); a file
    // it refuses is parsed again from the text, for an error that says
    // where (line and column).
    Raw::deserialize(toml::Value::Table(table))
        .or_else(|_| toml::from_str::<Raw>(text).map_err(|e| parse_err(e.to_string())))
}

impl ConfigFile {
    /// Why profile `name` is not served when the file has it but it is not
    /// valid (None when the file has no such profile, or a valid one).
    pub fn skipped_reason(&self, name: &str) -> Option<&str> {
        self.skipped.get(name).map(|s| s.reason.as_str())
    }

    /// Parses and validates the text of `path`.
    pub fn parse(text: &str, path: &Path) -> Result<ConfigFile, ConfigError> {
        // The file as a whole, then each profile on its own: a profile that
        // is not valid (a field of the wrong type or of another grant, a
        // bad value, a circle of inputs) is skipped and reported, and the
        // others are served.
        let raw = parse_raw(text, path)?;
        let mut config = ConfigFile {
            version: raw.version,
            store: raw.store,
            profiles: BTreeMap::new(),
            skipped: BTreeMap::new(),
        };
        let skip = |name: &str, table: toml::Value, why: String| {
            let (line, column) = line_column(text, position_of(text, name));
            // `why` can quote the file (an unknown key, as it is written):
            // it reaches terminals, so its control characters are escaped.
            let reason = format!(
                "profile {name:?} in {} (line {line}, column {column}) is not valid: {}; fix it there (the other profiles are served)",
                crate::text::escaped(&path.display().to_string()),
                crate::text::escaped(&why)
            );
            (name.to_string(), Skipped { reason, table })
        };
        for (name, table) in raw.profiles {
            let checked = validate_name(&name)
                .map_err(|message| format!("name: {message}"))
                .and_then(|()| RawProfile::deserialize(table.clone()).map_err(|e| e.to_string()))
                .and_then(|raw| Profile::try_from(raw).map_err(|e| e.to_string()))
                .and_then(|profile| {
                    profile.validate().map_err(|e| e.to_string())?;
                    Ok(profile)
                });
            match checked {
                Ok(profile) => {
                    config.profiles.insert(name, std::sync::Arc::new(profile));
                }
                Err(why) => {
                    let (name, skipped) = skip(&name, table, why);
                    config.skipped.insert(name, skipped);
                }
            }
        }
        // A circle or an over-deep chain (a hand edit: `add` refuses both):
        // each profile it is found from is skipped in turn.
        while let Err((name, chain)) = crate::chain::check_all(&config.profiles) {
            let Some(profile) = config.profiles.remove(&name) else {
                break;
            };
            let table =
                toml::Value::try_from(&profile).unwrap_or(toml::Value::Table(toml::Table::new()));
            let why = format!("{}: {chain}", chain.field());
            let (name, skipped) = skip(&name, table, why);
            config.skipped.insert(name, skipped);
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
        // The profiles that are not valid go back beside the others, as they
        // were read.
        #[derive(Serialize)]
        #[serde(untagged)]
        enum Entry<'a> {
            Valid(&'a Profile),
            Skipped(&'a toml::Value),
        }
        #[derive(Serialize)]
        struct File<'a> {
            version: u32,
            #[serde(skip_serializing_if = "Option::is_none")]
            store: Option<StoreKind>,
            profiles: BTreeMap<&'a str, Entry<'a>>,
        }
        let valid = self
            .profiles
            .iter()
            .map(|(n, p)| (n.as_str(), Entry::Valid(p)));
        let skipped = self
            .skipped
            .iter()
            .map(|(n, s)| (n.as_str(), Entry::Skipped(&s.table)));
        let file = File {
            version: self.version,
            store: self.store,
            // A valid profile of the name (an `add` that fixed it) wins.
            profiles: skipped.chain(valid).collect(),
        };
        let body = toml::to_string_pretty(&file).unwrap_or_else(|e| {
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
        config.profiles.insert("api".into(), std::sync::Arc::new(p));
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
    fn a_bad_profile_is_skipped_named_and_written_back_and_the_others_served() {
        let text = "version = 1\n\
                    [profiles.zulu]\ntoken_url = \"ftp://z\"\nclient_id = \"z\"\n\
                    [profiles.typo]\ntoken_url = \"https://t.example/t\"\nclient_id = \"t\"\nscopez = [\"a\"]\n\
                    [profiles.wrong-type]\ntoken_url = 3\nclient_id = \"w\"\n\
                    [profiles.api]\ntoken_url = \"https://idp.example/t\"\nclient_id = \"c\"\n";
        let config = ConfigFile::parse(text, Path::new("/c/p.toml")).unwrap();
        // A hand-written profile without `auth` is client_secret_basic, as
        // `add` makes it; it is served beside the bad ones.
        assert_eq!(config.profiles.keys().collect::<Vec<_>>(), ["api"]);
        assert_eq!(config.profiles["api"].auth, AuthMethod::ClientSecretBasic);
        let reason = |name: &str| config.skipped[name].reason.clone();
        assert!(reason("zulu").contains("/c/p.toml (line 2, column 1)"));
        assert!(reason("zulu").contains("token_url") && reason("zulu").contains("ftp"));
        assert!(reason("typo").contains("(line 5,") && reason("typo").contains("scopez"));
        assert!(
            reason("wrong-type").contains("(line 9,") && reason("wrong-type").contains("token_url")
        );
        // Written back: the bad profiles as they were, after the good one.
        let again = ConfigFile::parse(&config.to_toml(), Path::new("/c/p.toml")).unwrap();
        assert_eq!(again.profiles, config.profiles);
        assert_eq!(
            again.skipped.keys().collect::<Vec<_>>(),
            ["typo", "wrong-type", "zulu"]
        );
        for (name, skipped) in &again.skipped {
            assert_eq!(skipped.table, config.skipped[name].table, "{name}");
        }
        // A valid profile of a skipped one's name is the one written.
        let mut fixed = config.clone();
        fixed
            .profiles
            .insert("zulu".into(), config.profiles["api"].clone());
        let again = ConfigFile::parse(&fixed.to_toml(), Path::new("/c/p.toml")).unwrap();
        assert!(again.profiles.contains_key("zulu") && !again.skipped.contains_key("zulu"));
    }

    #[test]
    fn a_skipped_profile_tells_why_and_which_generation_holds_its_secrets() {
        let text = "version = 1\n\
                    [profiles.bad]\ntoken_url = \"ftp://z\"\nclient_id = \"z\"\ngeneration = 7\n\
                    [profiles.old]\ntoken_url = 3\n";
        let config = ConfigFile::parse(text, Path::new("/c/p.toml")).unwrap();
        let why = config.skipped_reason("bad").unwrap();
        assert!(why.contains("token_url") && why.contains("ftp"), "{why}");
        assert_eq!(
            config
                .skipped_reason("old")
                .map(|w| w.contains("token_url")),
            Some(true)
        );
        assert_eq!(config.skipped_reason("none"), None);
        assert_eq!(config.skipped["bad"].generation(), 7);
        assert_eq!(config.skipped["old"].generation(), 0);
    }

    /// Only a missing directory or file is an empty config: any other
    /// failure to read either is said, never taken for "no profiles".
    #[test]
    fn load_says_why_it_cannot_read_rather_than_finding_nothing() {
        let dir = tempfile::tempdir().unwrap();
        // The directory's path runs through a file.
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        let err = ConfigFile::load(&file.join("conf/profiles.toml")).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Read { message, .. } if message.contains("Not a directory")),
            "{err}"
        );
        // The file is a symlink to itself.
        let conf = dir.path().join("conf");
        std::fs::create_dir(&conf).unwrap();
        std::fs::set_permissions(&conf, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        let path = conf.join("profiles.toml");
        std::os::unix::fs::symlink(&path, &path).unwrap();
        let err = ConfigFile::load(&path).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Read { message, .. } if message.contains("symbolic links")),
            "{err}"
        );
    }

    /// `load`: a missing file or directory is an empty config; a file or
    /// directory others could write, or one too large, is refused.
    #[test]
    fn load_refuses_what_others_could_write_and_what_is_too_large() {
        use std::os::unix::fs::PermissionsExt;
        let set = |p: &Path, mode: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("conf");
        let path = conf.join("profiles.toml");
        assert!(
            ConfigFile::load(&path).unwrap().profiles.is_empty(),
            "no dir"
        );
        std::fs::create_dir(&conf).unwrap();
        set(&conf, 0o700);
        assert!(
            ConfigFile::load(&path).unwrap().profiles.is_empty(),
            "no file"
        );
        let good =
            "version = 1\n[profiles.a]\ntoken_url = \"https://a.example/t\"\nclient_id = \"a\"\n";
        std::fs::write(&path, good).unwrap();
        set(&path, 0o600);
        assert_eq!(ConfigFile::load(&path).unwrap().profiles.len(), 1);
        // Group- or world-readable is fine; writable is not.
        set(&path, 0o644);
        ConfigFile::load(&path).unwrap();
        for mode in [0o620, 0o602, 0o666] {
            set(&path, mode);
            let err = ConfigFile::load(&path).unwrap_err().to_string();
            assert!(err.contains("writable by others"), "{mode:o}: {err}");
        }
        set(&path, 0o600);
        for mode in [0o770, 0o707] {
            set(&conf, mode);
            let err = ConfigFile::load(&path).unwrap_err().to_string();
            assert!(
                err.contains("directory") && err.contains("writable"),
                "{mode:o}: {err}"
            );
        }
        // A shared directory with the sticky bit is the user's own files'.
        set(&conf, 0o1777);
        ConfigFile::load(&path).unwrap();
        set(&conf, 0o700);
        // Another user's file or directory (root's is fine): only root can
        // make one here, and the suite runs as root (CI, the test machines).
        if rustix::process::geteuid().is_root() {
            for (p, what) in [(&path, "file"), (&conf, "directory")] {
                std::os::unix::fs::chown(p, Some(65534), None).unwrap();
                let err = ConfigFile::load(&path).unwrap_err().to_string();
                assert!(
                    err.contains(&format!("config {what} is owned by uid 65534, not by you")),
                    "{err}"
                );
                std::os::unix::fs::chown(p, Some(0), None).unwrap();
                ConfigFile::load(&path).unwrap();
            }
        }
        // The size cap: 4 MiB.
        assert_eq!(MAX_CONFIG_BYTES, 4 * 1024 * 1024);
        let mut big = good.to_string();
        big.push_str(&"#".repeat(MAX_CONFIG_BYTES as usize - big.len()));
        std::fs::write(&path, &big).unwrap();
        ConfigFile::load(&path).unwrap();
        big.push('#');
        std::fs::write(&path, &big).unwrap();
        let err = ConfigFile::load(&path).unwrap_err().to_string();
        assert!(err.contains("larger than 4194304 bytes"), "{err}");
        // Unreadable for another reason than absence: said so.
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        assert!(ConfigFile::load(&path).is_err());
    }

    #[test]
    fn a_file_of_bad_profiles_alone_is_written_back_readable() {
        for text in [
            "version = 1\n[profiles]\na = 3\n",
            "version = 1\n[profiles.a]\ntoken_url = 3\n",
            "version = 1\n[profiles]\na = 3\n[profiles.b]\ntoken_url = \"https://b.example/t\"\nclient_id = \"b\"\n",
        ] {
            crate::fuzzing::config_parser(text);
        }
    }

    #[test]
    fn a_reason_quoting_the_file_carries_no_control_character() {
        let text = "version = 1\n[profiles.p]\ntoken_url = \"https://t.example/t\"\nclient_id = \"c\"\n\"x\\u001b[2J\" = 1\n";
        let config = ConfigFile::parse(text, Path::new("/c/p.toml")).unwrap();
        let reason = &config.skipped["p"].reason;
        assert!(!reason.chars().any(char::is_control), "{reason:?}");
        assert!(reason.contains("\\u{1b}[2J"), "{reason}");
    }

    #[test]
    fn line_and_column_count_from_one() {
        assert_eq!(line_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
        assert_eq!(line_column("ab\ncd", 99), (2, 3));
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
        let from_json: ProfileMap = serde_json::from_value(json).unwrap();
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
