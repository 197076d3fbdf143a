//! DPoP nonces (RFC 9449 §8): the last nonce each authorization server gave
//! goes with the next request to it, and a `use_dpop_nonce` answer is retried
//! once with the nonce it carries.

use super::error::OAuthError;
use super::token::{TokenRequest, TokenResponse, fetch_token};
use std::collections::HashMap;
use std::sync::Mutex;

/// The last `DPoP-Nonce` of each authorization server, by origin.
#[derive(Default)]
pub(crate) struct Nonces(Mutex<HashMap<String, String>>);

impl Nonces {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends the token request `build` makes. With DPoP, the server's last
    /// nonce goes along, and a `use_dpop_nonce` answer is retried once with
    /// the nonce it carries, in a request built anew: a new proof, and new
    /// client and grant assertions (the server may have consumed the first
    /// ones' `jti`).
    pub(crate) async fn send<'a>(
        &self,
        http: &reqwest::Client,
        build: impl Fn() -> Result<TokenRequest<'a>, OAuthError>,
    ) -> Result<TokenResponse, OAuthError> {
        let mut req = build()?;
        let origin = req.token_endpoint.origin().ascii_serialization();
        let mut known = self.map().get(&origin).cloned();
        let mut retried = false;
        loop {
            if let Some((_, nonce)) = &mut req.dpop {
                *nonce = known.clone();
            }
            let mut result = fetch_token(http, &req).await;
            if let Err(e) = &result
                && super::token::may_send_again(e, &req.grant)
            {
                // Built again: a new assertion, never the same one twice.
                tracing::debug!(server = %origin, "the connection closed before any answer; sending the request again");
                let nonce = req.dpop.as_ref().and_then(|(_, n)| n.clone());
                req = build()?;
                if let Some((_, n)) = &mut req.dpop {
                    *n = nonce;
                }
                result = fetch_token(http, &req).await;
            }
            let (Some(_), Some(fresh)) = (
                &req.dpop,
                match &result {
                    Ok(ok) => ok.dpop_nonce.clone(),
                    Err(OAuthError::Idp { dpop_nonce, .. }) => dpop_nonce.clone(),
                    Err(_) => None,
                },
            ) else {
                return result;
            };
            self.map().insert(origin.clone(), fresh.clone());
            match &result {
                Err(OAuthError::Idp { error, .. }) if error == "use_dpop_nonce" && !retried => {
                    tracing::debug!(server = %origin, "authorization server asked for a DPoP nonce; retrying with it");
                    retried = true;
                    known = Some(fresh);
                    req = build()?;
                }
                _ => return result,
            }
        }
    }
}
