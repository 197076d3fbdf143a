//! A request's form: what the OAuth client sends form-encoded (grant
//! parameters, client authentication), with the fields that carry a secret
//! kept apart so that they are encoded into a buffer that wipes itself.

use super::error::{OAuthError, SetupError};
use jwtagent::secret::Secret;

/// A token request's form: plain fields, and the fields that carry a secret
/// (the client secret, an assertion, a refresh token), which are encoded into
/// a buffer that wipes itself and never logged.
#[derive(Default, Clone)]
pub(crate) struct Form<'a> {
    pub fields: Vec<(&'a str, String)>,
    pub secrets: Vec<(&'a str, Secret)>,
}

impl<'a> Form<'a> {
    pub(crate) fn push(&mut self, key: &'a str, value: impl Into<String>) {
        self.fields.push((key, value.into()));
    }

    pub(crate) fn push_secret(&mut self, key: &'a str, value: Secret) {
        self.secrets.push((key, value));
    }

    pub(super) fn encode(&self) -> Result<zeroize::Zeroizing<String>, OAuthError> {
        let mut body = zeroize::Zeroizing::new(String::new());
        let mut ser = url::form_urlencoded::Serializer::new(&mut *body);
        for (k, v) in &self.fields {
            ser.append_pair(k, v);
        }
        for (k, v) in &self.secrets {
            let text = std::str::from_utf8(v.expose()).map_err(|_| SetupError::Stored {
                what: "secret",
                detail: "it is not text".into(),
            })?;
            ser.append_pair(k, text);
        }
        ser.finish();
        Ok(body)
    }
}
