//! `add --google-credentials FILE`: a Google service-account key file becomes
//! a jwt-bearer profile in Google's documented form. The private key goes to
//! the keyring (through the agent); the rest goes to the profile, and the
//! file is not needed afterwards.

use crate::error::CliError;
use jwtagent::config::{Alg, GrantKind, RawProfile};
use jwtagent::secret::Secret;
use serde::Deserialize;
use std::path::Path;
use zeroize::Zeroizing;

/// Largest key file read (they are about 2.3 KB).
const MAX_FILE: u64 = 64 * 1024;

#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: Option<String>,
    private_key: Option<String>,
    private_key_id: Option<String>,
    client_email: Option<String>,
    token_uri: Option<String>,
}

/// Reads the key file at `path` into `profile` (client id, token endpoint,
/// kid, grant); returns the private key for the keyring.
pub fn import(path: &Path, profile: &mut RawProfile) -> Result<Secret, CliError> {
    let shown = path.display();
    let text = match jwtagent::files::read_regular(path, MAX_FILE) {
        Ok(text) => Zeroizing::new(text),
        Err(jwtagent::files::FileError::TooLarge(_)) => {
            return Err(CliError::Usage(format!(
                "--google-credentials: {shown} is over 64 KiB; is it a service-account key file?"
            )));
        }
        Err(e) => {
            return Err(CliError::Usage(format!(
                "--google-credentials {shown}: {e}"
            )));
        }
    };
    let file: KeyFile = serde_json::from_slice(&text).map_err(|e| {
        CliError::Usage(format!(
            "--google-credentials: {shown} is not a Google credentials JSON file ({e})"
        ))
    })?;
    match file.kind.as_deref() {
        Some("service_account") => {}
        Some("authorized_user") => {
            return Err(CliError::Usage(format!(
                "--google-credentials: {shown} holds a user's refresh token (type authorized_user, from `gcloud auth application-default login`); jwtagent imports service-account keys (type service_account): create one with `gcloud iam service-accounts keys create`"
            )));
        }
        Some(other) => {
            return Err(CliError::Usage(format!(
                "--google-credentials: {shown} is a {other:?} credentials file; jwtagent imports service-account keys (type service_account) only"
            )));
        }
        None => {
            return Err(CliError::Usage(format!(
                "--google-credentials: {shown} has no \"type\"; give a service-account key file (type service_account)"
            )));
        }
    }
    let missing = |field: &str| {
        CliError::Usage(format!(
            "--google-credentials: {shown} has no {field:?}; download the service account's key again"
        ))
    };
    let key = file.private_key.ok_or_else(|| missing("private_key"))?;
    profile.client_id = file.client_email.ok_or_else(|| missing("client_email"))?;
    profile.kid = Some(
        file.private_key_id
            .ok_or_else(|| missing("private_key_id"))?,
    );
    profile.token_url = Some(file.token_uri.ok_or_else(|| missing("token_uri"))?);
    profile.grant = Some(GrantKind::JwtBearer);
    profile.google = true;
    profile.alg = Some(Alg::RS256);
    Ok(Secret::new(key.into_bytes()))
}
