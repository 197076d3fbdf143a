//! The encrypted file store (`--store file`): every secret, DPoP key and
//! refresh token in one file, sealed with a key derived from a passphrase,
//! for machines without a desktop keyring whose secrets must outlive a
//! reboot.
//!
//! Format version 1 is one line of JSON:
//!
//! ```text
//! {"format":"jwtagent-secrets","version":1,
//!  "kdf":{"alg":"argon2id","m_kib":65536,"t":3,"p":1,"salt":"<16 bytes>"},
//!  "aead":"xchacha20-poly1305","nonce":"<24 bytes>","sealed":"<ciphertext>"}
//! ```
//!
//! (byte strings in unpadded base64url). The key is Argon2id (version 0x13)
//! of the passphrase and the salt; the header is the AEAD's associated data,
//! so a changed parameter fails like a changed byte. The plaintext is the
//! entries, each as a 4-byte big-endian length and the account name, then a
//! 4-byte length and the secret.
//!
//! The key is derived once, when the store is unsealed, and wiped when it is
//! sealed again. Every write draws a new random 192-bit nonce: with that
//! many bits, nonces drawn at random do not repeat under one key however
//! many times the file is written, and no counter has to survive a crash.

use crate::config_io::write_atomic_at;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use jwtagent::secret::Secret;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

const FORMAT: &str = "jwtagent-secrets";
const VERSION: u32 = 1;
const AEAD: &str = "xchacha20-poly1305";
const KDF: &str = "argon2id";

/// Argon2id cost of a new store: 64 MiB, 3 passes, one lane (RFC 9106's
/// second recommended option, with one lane: the agent derives once per
/// unlock, and an attacker gains nothing from lanes the user does not use).
const NEW_KDF: Kdf = Kdf {
    m_kib: 64 * 1024,
    t: 3,
    p: 1,
    salt: [0; 16],
};

/// The most a store file may ask for: a file is hostile until its tag
/// checks, and the cost is read before that.
const MAX_M_KIB: u32 = 1024 * 1024;
const MAX_T: u32 = 64;
const MAX_P: u32 = 16;

/// A store holds a few hundred secrets of a few KiB at most.
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// The crash point between the fsync of the new file and its rename (tests).
pub(crate) const CRASH_STEP: &str = "store:before-rename";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FileStoreError {
    #[error("the file store is sealed: run `jwtagent unlock` and give its passphrase")]
    Sealed,
    #[error("wrong passphrase for the file store {path} (or the file was altered)")]
    WrongPassphrase { path: PathBuf },
    #[error("an empty passphrase would protect nothing; choose one")]
    EmptyPassphrase,
    #[error("refusing the file store {path}: {message}")]
    Unsafe { path: PathBuf, message: String },
    #[error(
        "the file store {path} is damaged ({detail}). It was left as it is: restore it from a backup, or move it away and add the profiles again"
    )]
    Corrupt { path: PathBuf, detail: String },
    #[error("cannot use the file store {path}: {detail}")]
    Io { path: PathBuf, detail: String },
}

/// Argon2id parameters and salt of one store file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Kdf {
    m_kib: u32,
    t: u32,
    p: u32,
    salt: [u8; 16],
}

impl Kdf {
    /// The associated data: every header field, in a fixed order.
    fn header(&self) -> String {
        format!(
            "{FORMAT} v{VERSION} {KDF} v19 m={} t={} p={} salt={} {AEAD}",
            self.m_kib,
            self.t,
            self.p,
            B64.encode(self.salt)
        )
    }

    fn derive(&self, passphrase: &Secret) -> Result<Zeroizing<[u8; 32]>, String> {
        let params =
            argon2::Params::new(self.m_kib, self.t, self.p, Some(32)).map_err(|e| e.to_string())?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut key = Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into(passphrase.expose(), &self.salt, &mut *key)
            .map_err(|e| e.to_string())?;
        Ok(key)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KdfJson {
    alg: String,
    m_kib: u32,
    t: u32,
    p: u32,
    salt: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileJson {
    format: String,
    version: u32,
    kdf: KdfJson,
    aead: String,
    nonce: String,
    sealed: String,
}

struct Unsealed {
    kdf: Kdf,
    key: Zeroizing<[u8; 32]>,
    entries: BTreeMap<String, Secret>,
}

/// The store file at one path, sealed or not.
pub(crate) struct FileStore {
    path: PathBuf,
    open: Option<Unsealed>,
}

impl FileStore {
    pub(crate) fn new(path: PathBuf) -> FileStore {
        FileStore { path, open: None }
    }

    #[cfg(test)]
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn is_sealed(&self) -> bool {
        self.open.is_none()
    }

    /// Whether the file exists yet (the first unlock creates it).
    pub(crate) fn exists(&self) -> bool {
        std::fs::symlink_metadata(&self.path).is_ok()
    }

    /// Wipes the key and every secret from memory.
    pub(crate) fn seal(&mut self) {
        self.open = None;
    }

    /// Opens the store with `passphrase`; creates it, empty, when there is no
    /// file yet. Argon2id takes a fraction of a second: call it off the
    /// async workers.
    pub(crate) fn unseal(&mut self, passphrase: &Secret) -> Result<(), FileStoreError> {
        if passphrase.is_empty() {
            return Err(FileStoreError::EmptyPassphrase);
        }
        let unsealed = match self.read()? {
            Some(text) => self.open_text(&text, passphrase)?,
            None => self.create(passphrase)?,
        };
        self.open = Some(unsealed);
        Ok(())
    }

    fn create(&self, passphrase: &Secret) -> Result<Unsealed, FileStoreError> {
        let mut kdf = NEW_KDF;
        aws_lc_rs::rand::fill(&mut kdf.salt).map_err(|_| self.io("no randomness"))?;
        let key = kdf.derive(passphrase).map_err(|e| self.io(&e))?;
        let unsealed = Unsealed {
            kdf,
            key,
            entries: BTreeMap::new(),
        };
        self.write(&unsealed)?;
        tracing::info!(path = %self.path.display(), "created the file store");
        Ok(unsealed)
    }

    pub(crate) fn get(&self, account: &str) -> Result<Option<Secret>, FileStoreError> {
        let open = self.open.as_ref().ok_or(FileStoreError::Sealed)?;
        Ok(open.entries.get(account).cloned())
    }

    /// Creates or replaces one entry; the file on disk is replaced whole
    /// (atomically) before memory changes, so a failed write changes nothing.
    pub(crate) fn set(&mut self, account: &str, secret: Secret) -> Result<(), FileStoreError> {
        self.change(|entries| {
            entries.insert(account.to_owned(), secret);
        })
        .map(|_| ())
    }

    /// Deletes one entry; `false` when there was none.
    pub(crate) fn delete(&mut self, account: &str) -> Result<bool, FileStoreError> {
        let open = self.open.as_ref().ok_or(FileStoreError::Sealed)?;
        if !open.entries.contains_key(account) {
            return Ok(false);
        }
        self.change(|entries| {
            entries.remove(account);
        })?;
        Ok(true)
    }

    fn change(
        &mut self,
        edit: impl FnOnce(&mut BTreeMap<String, Secret>),
    ) -> Result<(), FileStoreError> {
        let open = self.open.as_ref().ok_or(FileStoreError::Sealed)?;
        let mut next = Unsealed {
            kdf: open.kdf,
            key: open.key.clone(),
            entries: open.entries.clone(),
        };
        edit(&mut next.entries);
        self.write(&next)?;
        self.open = Some(next);
        Ok(())
    }

    fn io(&self, detail: &str) -> FileStoreError {
        FileStoreError::Io {
            path: self.path.clone(),
            detail: detail.to_owned(),
        }
    }

    fn corrupt(&self, detail: impl Into<String>) -> FileStoreError {
        FileStoreError::Corrupt {
            path: self.path.clone(),
            detail: detail.into(),
        }
    }

    fn unsafe_(&self, path: &Path, message: String) -> FileStoreError {
        FileStoreError::Unsafe {
            path: path.to_path_buf(),
            message,
        }
    }

    /// The file's text, after the checks that the config gets and stricter
    /// ones (the user's own, no access for group or others, not a symlink);
    /// `None` when there is no file.
    fn read(&self) -> Result<Option<String>, FileStoreError> {
        use std::os::unix::fs::MetadataExt;
        let uid = rustix::process::geteuid().as_raw();
        if let Some(dir) = self.path.parent()
            && let Ok(meta) = std::fs::metadata(dir)
        {
            if meta.uid() != uid {
                return Err(self.unsafe_(
                    dir,
                    format!(
                        "the directory is owned by uid {}, not by you (uid {uid})",
                        meta.uid()
                    ),
                ));
            }
            if meta.mode() & 0o022 != 0 {
                return Err(self.unsafe_(
                    dir,
                    format!(
                        "the directory has mode {:04o}, writable by others; run `chmod go-w {}`",
                        meta.mode() & 0o7777,
                        dir.display()
                    ),
                ));
            }
        }
        let meta = match std::fs::symlink_metadata(&self.path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io(&e.to_string())),
        };
        if !meta.file_type().is_file() {
            return Err(self.unsafe_(
                &self.path,
                "it is not a regular file (a symlink, a directory or a device)".into(),
            ));
        }
        if meta.uid() != uid {
            return Err(self.unsafe_(
                &self.path,
                format!("it is owned by uid {}, not by you (uid {uid})", meta.uid()),
            ));
        }
        let mode = meta.mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(self.unsafe_(
                &self.path,
                format!(
                    "it has mode {mode:04o}, open to other users; check who read it, then run `chmod 600 {}`",
                    self.path.display()
                ),
            ));
        }
        let bytes = jwtagent::files::read_regular(&self.path, MAX_FILE_BYTES)
            .map_err(|e| self.io(&e.to_string()))?;
        String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| self.corrupt("not text"))
    }

    fn open_text(&self, text: &str, passphrase: &Secret) -> Result<Unsealed, FileStoreError> {
        let file: FileJson = serde_json::from_str(text.trim_end())
            .map_err(|e| self.corrupt(format!("not a store file: {e}")))?;
        if file.format != FORMAT {
            return Err(self.corrupt(format!("format {:?}, not {FORMAT:?}", file.format)));
        }
        if file.version != VERSION {
            return Err(self.corrupt(format!(
                "version {}, but this jwtagent reads version {VERSION}; upgrade jwtagent",
                file.version
            )));
        }
        if file.kdf.alg != KDF || file.aead != AEAD {
            return Err(self.corrupt(format!(
                "unknown algorithms {} and {}",
                file.kdf.alg, file.aead
            )));
        }
        let k = &file.kdf;
        if k.m_kib > MAX_M_KIB || k.t > MAX_T || k.p > MAX_P || k.t == 0 || k.p == 0 {
            return Err(self.corrupt(format!(
                "Argon2id cost m={} KiB t={} p={} is out of range (at most m={MAX_M_KIB} t={MAX_T} p={MAX_P})",
                k.m_kib, k.t, k.p
            )));
        }
        let salt = self.bytes::<16>(&k.salt, "salt")?;
        let nonce = self.bytes::<24>(&file.nonce, "nonce")?;
        let sealed = B64
            .decode(file.sealed.as_bytes())
            .map_err(|_| self.corrupt("the sealed data is not base64url"))?;
        let kdf = Kdf {
            m_kib: k.m_kib,
            t: k.t,
            p: k.p,
            salt,
        };
        let key = kdf.derive(passphrase).map_err(|e| self.corrupt(e))?;
        let cipher = XChaCha20Poly1305::new((&*key).into());
        let header = kdf.header();
        let plain = cipher
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &sealed,
                    aad: header.as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| FileStoreError::WrongPassphrase {
                path: self.path.clone(),
            })?;
        let entries = decode_entries(&plain).map_err(|e| self.corrupt(e))?;
        Ok(Unsealed { kdf, key, entries })
    }

    fn bytes<const N: usize>(&self, text: &str, what: &str) -> Result<[u8; N], FileStoreError> {
        B64.decode(text.as_bytes())
            .ok()
            .and_then(|b| <[u8; N]>::try_from(b.as_slice()).ok())
            .ok_or_else(|| self.corrupt(format!("the {what} is not {N} bytes of base64url")))
    }

    fn write(&self, unsealed: &Unsealed) -> Result<(), FileStoreError> {
        let mut nonce = [0u8; 24];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| self.io("no randomness"))?;
        let plain = encode_entries(&unsealed.entries);
        let cipher = XChaCha20Poly1305::new((&*unsealed.key).into());
        let header = unsealed.kdf.header();
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: header.as_bytes(),
                },
            )
            .map_err(|_| self.io("cannot encrypt"))?;
        let file = FileJson {
            format: FORMAT.into(),
            version: VERSION,
            kdf: KdfJson {
                alg: KDF.into(),
                m_kib: unsealed.kdf.m_kib,
                t: unsealed.kdf.t,
                p: unsealed.kdf.p,
                salt: B64.encode(unsealed.kdf.salt),
            },
            aead: AEAD.into(),
            nonce: B64.encode(nonce),
            sealed: B64.encode(&sealed),
        };
        let mut text = serde_json::to_string(&file).map_err(|e| self.io(&e.to_string()))?;
        text.push('\n');
        write_atomic_at(&self.path, text.as_bytes(), CRASH_STEP).map_err(|e| FileStoreError::Io {
            path: self.path.clone(),
            detail: e.source.to_string(),
        })
    }
}

fn encode_entries(entries: &BTreeMap<String, Secret>) -> Zeroizing<Vec<u8>> {
    let size = entries
        .iter()
        .map(|(k, v)| 8 + k.len() + v.len())
        .sum::<usize>();
    let mut out = Zeroizing::new(Vec::with_capacity(size));
    for (account, secret) in entries {
        for part in [account.as_bytes(), secret.expose()] {
            // A part over 4 GiB cannot be in a store capped at 16 MiB.
            let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(part);
        }
    }
    out
}

fn decode_entries(mut data: &[u8]) -> Result<BTreeMap<String, Secret>, String> {
    fn part<'a>(data: &mut &'a [u8]) -> Result<&'a [u8], String> {
        let (len, rest) = data
            .split_first_chunk::<4>()
            .ok_or("an entry is cut short")?;
        let len = usize::try_from(u32::from_be_bytes(*len)).map_err(|_| "an entry is too long")?;
        if rest.len() < len {
            return Err("an entry is cut short".into());
        }
        let (part, rest) = rest.split_at(len);
        *data = rest;
        Ok(part)
    }
    let mut entries = BTreeMap::new();
    while !data.is_empty() {
        let account = std::str::from_utf8(part(&mut data)?)
            .map_err(|_| "an account name is not UTF-8")?
            .to_owned();
        let secret = Secret::new(part(&mut data)?.to_vec());
        entries.insert(account, secret);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn s(text: &str) -> Secret {
        Secret::new(text.as_bytes().to_vec())
    }

    /// A store with a cheap KDF, so the tests do not spend seconds in Argon2.
    fn store(dir: &tempfile::TempDir) -> FileStore {
        FileStore::new(dir.path().join("jwtagent").join("secrets.sealed"))
    }

    #[test]
    fn entries_survive_a_new_store_on_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = store(&dir);
        assert!(first.is_sealed() && !first.exists());
        assert_eq!(first.get("a"), Err(FileStoreError::Sealed));
        first.unseal(&s("pass phrase")).unwrap();
        assert!(!first.is_sealed() && first.exists());
        first.set("profile/a", s("s3cret")).unwrap();
        first.set("refresh/b", s("r\0\n")).unwrap();
        first.set("profile/a", s("newer")).unwrap();
        assert!(first.delete("refresh/b").unwrap());
        assert!(!first.delete("refresh/b").unwrap());
        first.set("dpop/c", s("")).unwrap();

        let mut again = store(&dir);
        again.unseal(&s("pass phrase")).unwrap();
        assert_eq!(again.get("profile/a").unwrap(), Some(s("newer")));
        assert_eq!(again.get("refresh/b").unwrap(), None);
        assert_eq!(again.get("dpop/c").unwrap(), Some(s("")));
        again.seal();
        assert_eq!(again.get("profile/a"), Err(FileStoreError::Sealed));

        let meta = std::fs::metadata(first.path()).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let text = std::fs::read_to_string(first.path()).unwrap();
        assert!(
            !text.contains("s3cret") && !text.contains("newer"),
            "{text}"
        );
        assert!(text.contains(r#""m_kib":65536,"t":3,"p":1"#), "{text}");
    }

    /// A file written by format version 1 (committed beside this module, made
    /// with the passphrase `fixture passphrase`) opens, header and all: the
    /// format is read as it was written.
    #[test]
    fn a_version_1_file_opens_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut fixture = store(&dir);
        let path = fixture.path().to_path_buf();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, include_str!("filestore-v1.sealed")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        fixture.unseal(&s("fixture passphrase")).unwrap();
        assert_eq!(
            fixture.get("jwtagent/profile/api").unwrap(),
            Some(s("s3cret-from-version-1"))
        );
        assert_eq!(fixture.get("jwtagent/refresh/me").unwrap(), Some(s("rt")));
    }

    /// A store file over 16 MiB is not read.
    #[test]
    fn a_file_over_the_cap_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut big = store(&dir);
        let path = big.path().to_path_buf();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, vec![b' '; 16 * 1024 * 1024 + 1]).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = big.unseal(&s("x")).unwrap_err().to_string();
        assert!(err.contains("cannot use the file store"), "{err}");
        // At the cap it is read (and then is not a store file).
        std::fs::write(&path, vec![b' '; 16 * 1024 * 1024]).unwrap();
        let err = big.unseal(&s("x")).unwrap_err().to_string();
        assert!(err.contains("is damaged"), "{err}");
    }

    #[test]
    fn a_wrong_passphrase_opens_nothing_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = store(&dir);
        first.unseal(&s("right")).unwrap();
        first.set("profile/a", s("s3cret")).unwrap();
        let before = std::fs::read(first.path()).unwrap();
        let mut other = store(&dir);
        assert!(matches!(
            other.unseal(&s("wrong")),
            Err(FileStoreError::WrongPassphrase { .. })
        ));
        assert!(other.is_sealed());
        assert_eq!(other.unseal(&s("")), Err(FileStoreError::EmptyPassphrase));
        assert_eq!(std::fs::read(first.path()).unwrap(), before);
    }

    #[test]
    fn a_changed_header_or_byte_is_refused_and_the_file_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = store(&dir);
        first.unseal(&s("right")).unwrap();
        first.set("profile/a", s("s3cret")).unwrap();
        let good = std::fs::read_to_string(first.path()).unwrap();
        let cases = [
            // A cheaper cost derives another key: the tag fails.
            (good.replace(r#""t":3"#, r#""t":2"#), "wrong passphrase"),
            (good[..good.len() / 2].to_string(), "is damaged"),
            (
                good.replace(r#""version":1"#, r#""version":9"#),
                "version 9",
            ),
            (
                good.replace(r#""m_kib":65536"#, r#""m_kib":4294967295"#),
                "out of range",
            ),
            (good.replace(r#""t":3"#, r#""t":0"#), "out of range"),
            // Either algorithm unknown, alone.
            (
                good.replace(r#""alg":"argon2id""#, r#""alg":"scrypt""#),
                "unknown algorithms",
            ),
            (
                good.replace(r#""aead":"xchacha20-poly1305""#, r#""aead":"aes-gcm""#),
                "unknown algorithms",
            ),
            // Each cost just past its most, alone.
            (
                good.replace(r#""m_kib":65536"#, r#""m_kib":1048577"#),
                "out of range",
            ),
            (good.replace(r#""t":3"#, r#""t":65"#), "out of range"),
            (good.replace(r#""p":1"#, r#""p":17"#), "out of range"),
            (good.replace(r#""p":1"#, r#""p":0"#), "out of range"),
            // Each at its most is taken (the bad salt is found next, before
            // any key is derived).
            (
                good.replace(r#""m_kib":65536"#, r#""m_kib":1048576"#)
                    .replace(r#""t":3"#, r#""t":64"#)
                    .replace(r#""p":1"#, r#""p":16"#)
                    .replace(r#""salt":""#, r#""salt":"!"#),
                "salt",
            ),
            ("".to_string(), "is damaged"),
        ];
        for (text, expected) in cases {
            std::fs::write(first.path(), &text).unwrap();
            let mut other = store(&dir);
            let err = other.unseal(&s("right")).unwrap_err().to_string();
            assert!(err.contains(expected), "{expected}: {err}");
            assert_eq!(std::fs::read_to_string(first.path()).unwrap(), text);
        }
    }

    #[test]
    fn a_file_open_to_others_or_of_another_kind_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = store(&dir);
        first.unseal(&s("right")).unwrap();
        let path = first.path().to_path_buf();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = store(&dir).unseal(&s("right")).unwrap_err().to_string();
        assert!(
            err.contains("mode 0644") && err.contains("chmod 600"),
            "{err}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();

        let parent = path.parent().unwrap();
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = store(&dir).unseal(&s("right")).unwrap_err().to_string();
        assert!(err.contains("writable by others"), "{err}");
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o700)).unwrap();

        let real = parent.join("real");
        std::fs::rename(&path, &real).unwrap();
        std::os::unix::fs::symlink(&real, &path).unwrap();
        let err = store(&dir).unseal(&s("right")).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
    }

    #[test]
    fn entries_decode_what_they_encode_and_reject_a_short_one() {
        let mut entries = BTreeMap::new();
        entries.insert("profile/a".to_string(), s("x"));
        entries.insert("dpop/é".to_string(), s("\u{0}\u{ff}"));
        let encoded = encode_entries(&entries);
        assert_eq!(decode_entries(&encoded).unwrap(), entries);
        // Sized before it is filled: a buffer that grew would leave a copy
        // of the secrets behind, unwiped.
        assert_eq!(encoded.capacity(), encoded.len());
        assert!(decode_entries(&encoded[..encoded.len() - 1]).is_err());
        assert!(decode_entries(&[0, 0, 0, 9, b'a']).is_err());
        assert!(decode_entries(&[0, 0]).is_err());
    }
}
