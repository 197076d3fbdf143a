//! The flat form of a profile, as the file and the wire hold it, and its
//! conversion to and from the typed [`Profile`].

use super::grant::{Assertion, Exchange, GitHubApp, Grant, GrantKind};
use super::profile::Profile;
use super::values::{Alg, AssertionAud, AuthMethod, FieldError, RefreshBefore, field_err};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A profile as profiles.toml and the wire (the `profile` object of `add`,
/// `show` and `list`) hold it: flat, every grant's settings beside the
/// others. Read into a [`Profile`] through [`TryFrom`], which refuses a
/// setting of another grant than the profile's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProfile {
    /// Issuer identifier; the token endpoint is discovered from its metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The token endpoint, when there is no discovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
    pub client_id: String,
    /// Client authentication; `client_secret_basic` when a hand-written
    /// profile leaves it out, as `add` does.
    #[serde(default)]
    pub auth: AuthMethod,
    /// Assertion signing algorithm (client_secret_jwt, private_key_jwt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<Alg>,
    /// `kid` header of assertions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// `aud` of assertions: `issuer`, `token-endpoint` or a URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assertion_aud: Option<AssertionAud>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// RFC 8707 resource indicators.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// The non-standard `audience` parameter some servers need.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Extra token request parameters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, String>,
    /// Extra trusted CA certificates (PEM), besides the platform's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// The client's certificate (PEM, the chain after it if any), whose
    /// private key is the profile's key in the keyring: presented in mutual
    /// TLS (tls_client_auth, self_signed_tls_client_auth), and named by its
    /// SHA-256 thumbprint (`x5t#S256`) in private_key_jwt assertions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// Refresh when less than this remains (a duration or a % of the lifetime).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_before: Option<RefreshBefore>,
    /// Executables allowed to get this profile's tokens; empty: any process of
    /// the user.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_exe: Vec<PathBuf>,
    /// With `allow_exe`: the allowed executable's content must have one of
    /// these SHA-256 digests (hex), besides being the file at the path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_exe_sha256: Vec<String>,
    /// With `allow_exe`: callers in other mount or user namespaces (a
    /// container, `unshare`) are served too, if they run the allowed file.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_exe_any_namespace: bool,
    /// DPoP (RFC 9449): tokens are bound to a key the agent generated and
    /// keeps in the keyring; every token request carries a proof.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dpop: bool,
    /// Never serve this profile's tokens over a connection forwarded by
    /// OpenSSH (`ssh -R`/`-L` stream-local forwarding: the process on the
    /// agent's end is `ssh` or `sshd`), as ssh-agent's destination
    /// constraints keep a key on the machine it is on.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_forward: bool,
    /// The DPoP key's algorithm (ES256, ES384, EdDSA or RS256; the agent
    /// fills in ES256 when `dpop` is set without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_alg: Option<Alg>,
    /// The grant its tokens come from (absent: client_credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<GrantKind>,
    /// jwt_bearer: the assertion's `sub` (default: the client id); for a
    /// Google service account, the user to act as (domain-wide delegation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// jwt_bearer: the assertion is this profile's current token instead of
    /// one the agent signs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assertion_profile: Option<String>,
    /// jwt_bearer in Google's form (a service account): `iss` = the client
    /// id (the account's email), the scopes in the assertion's `scope`
    /// claim, no client_id in the request.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub google: bool,
    /// token_exchange: the profile whose current token is the subject_token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_profile: Option<String>,
    /// token_exchange: the subject_token_type (default: what the subject
    /// profile's server issued, else an access token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_token_type: Option<String>,
    /// token_exchange: the profile whose current token is the actor_token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_profile: Option<String>,
    /// token_exchange: the requested_token_type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_token_type: Option<String>,
    /// github_app: the installation and what its tokens may do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github: Option<GitHubApp>,
    /// device-code without an issuer: the device authorization endpoint
    /// (RFC 8628 §3.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_authorization_url: Option<String>,
    /// authorization-code without an issuer: the authorization endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_url: Option<String>,
    /// Where `logout` revokes the refresh token (RFC 7009), when the issuer's
    /// metadata does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_url: Option<String>,
    /// RFC 7592: where the client `add --register` registered is managed
    /// (read, deleted at `remove`); its registration access token is in
    /// the secret store, never here. Set by the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_uri: Option<String>,
    /// Files the agent keeps holding the profile's current access token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sinks: Vec<super::values::Sink>,
    /// A command (program and arguments, run with no shell) that prints the
    /// secret or key whenever the agent needs it, instead of a keyring entry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_command: Vec<String>,
    /// How long after `add` or `renew` the agent serves the profile; then
    /// it drops its tokens and answers `expired_lifetime` until `renew`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::duration::optional"
    )]
    pub lifetime: Option<std::time::Duration>,
    /// When the lifetime runs out, also delete the secret from the store.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lifetime_remove: bool,
    /// Ask the person at the keyboard (askpass) before serving a token.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub confirm: bool,
    /// With `confirm`: how long a yes holds for the same caller.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::duration::optional"
    )]
    pub confirm_for: Option<std::time::Duration>,
    /// authorization-code: the loopback redirect's port, for servers that
    /// need a fixed one (default: any free port, RFC 8252 §7.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_port: Option<u16>,
    /// Which keyring entries hold the profile's secret and DPoP key: `0` is
    /// `profile/NAME` (and `dpop/NAME`), `N` is `profile/NAME#N`. A replaced
    /// profile's new secret goes to a new entry before the config names it,
    /// so a crash at any point leaves the config naming a complete profile.
    /// Set by the agent; a value in an `add` request is ignored.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub generation: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// `$to { every setting all grants share, moved from $from, and $rest }`:
/// the list of shared settings, once for both conversions. A setting added
/// to [`Profile`] and not here does not compile.
macro_rules! with_shared {
    ($from:ident => $to:ident { $($rest:tt)* }) => {
        $to {
            issuer: $from.issuer,
            token_url: $from.token_url,
            client_id: $from.client_id,
            auth: $from.auth,
            alg: $from.alg,
            kid: $from.kid,
            assertion_aud: $from.assertion_aud,
            scopes: $from.scopes,
            resources: $from.resources,
            audience: $from.audience,
            params: $from.params,
            ca_file: $from.ca_file,
            certificate: $from.certificate,
            refresh_before: $from.refresh_before,
            allow_exe: $from.allow_exe,
            allow_exe_sha256: $from.allow_exe_sha256,
            allow_exe_any_namespace: $from.allow_exe_any_namespace,
            dpop: $from.dpop,
            no_forward: $from.no_forward,
            dpop_alg: $from.dpop_alg,
            revocation_url: $from.revocation_url,
            registration_uri: $from.registration_uri,
            sinks: $from.sinks,
            secret_command: $from.secret_command,
            lifetime: $from.lifetime,
            lifetime_remove: $from.lifetime_remove,
            confirm: $from.confirm,
            confirm_for: $from.confirm_for,
            generation: $from.generation,
            $($rest)*
        }
    };
}

/// A profile is read as a [`RawProfile`] and typed; a setting of another
/// grant is an error naming the field.
impl<'de> Deserialize<'de> for Profile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Profile::try_from(RawProfile::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A profile is written flat, as a [`RawProfile`].
impl Serialize for Profile {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        RawProfile::from(self.clone()).serialize(s)
    }
}

impl TryFrom<RawProfile> for Profile {
    type Error = FieldError;

    fn try_from(mut raw: RawProfile) -> Result<Profile, FieldError> {
        let grant = raw.take_grant()?;
        Ok(with_shared!(raw => Profile { grant }))
    }
}

impl RawProfile {
    /// The grant these fields describe, its settings taken out of them; a
    /// setting of another grant, or a grant without what it needs, is an
    /// error naming the field.
    fn take_grant(&mut self) -> Result<Grant, FieldError> {
        let kind = self.grant.unwrap_or_default();
        self.check_grant_fields(kind)?;
        Ok(match kind {
            GrantKind::ClientCredentials => Grant::ClientCredentials,
            GrantKind::JwtBearer => Grant::JwtBearer(match self.assertion_profile.take() {
                None => Assertion::Signed {
                    subject: self.subject.take(),
                    google: self.google,
                },
                Some(_) if self.google || self.subject.is_some() => {
                    return Err(field_err(
                        "assertion_profile",
                        "an assertion from another profile is sent as it is: --subject and --google-credentials do not apply",
                    ));
                }
                Some(name) => Assertion::Profile(name),
            }),
            GrantKind::TokenExchange => Grant::TokenExchange(Box::new(Exchange {
                subject_profile: self.subject_profile.take().ok_or_else(|| {
                    field_err(
                        "subject_profile",
                        "the token-exchange grant needs --subject-profile NAME (the profile whose token is exchanged)",
                    )
                })?,
                subject_token_type: self.subject_token_type.take(),
                actor_profile: self.actor_profile.take(),
                requested_token_type: self.requested_token_type.take(),
            })),
            GrantKind::GithubApp => Grant::GithubApp(Box::new(self.github.take().ok_or_else(|| {
                field_err(
                    "github",
                    "a GitHub App profile needs its installation: use --github-app APP_ID --installation ID",
                )
            })?)),
            GrantKind::DeviceCode => Grant::DeviceCode {
                device_authorization_url: self.device_authorization_url.take(),
            },
            GrantKind::AuthorizationCode => Grant::AuthorizationCode {
                authorization_url: self.authorization_url.take(),
                redirect_port: self.redirect_port.take(),
            },
        })
    }

    /// A grant's own settings go with that grant only.
    fn check_grant_fields(&self, kind: GrantKind) -> Result<(), FieldError> {
        for (field, set, owner) in [
            ("subject", self.subject.is_some(), GrantKind::JwtBearer),
            (
                "assertion_profile",
                self.assertion_profile.is_some(),
                GrantKind::JwtBearer,
            ),
            ("google", self.google, GrantKind::JwtBearer),
            (
                "subject_profile",
                self.subject_profile.is_some(),
                GrantKind::TokenExchange,
            ),
            (
                "subject_token_type",
                self.subject_token_type.is_some(),
                GrantKind::TokenExchange,
            ),
            (
                "actor_profile",
                self.actor_profile.is_some(),
                GrantKind::TokenExchange,
            ),
            (
                "requested_token_type",
                self.requested_token_type.is_some(),
                GrantKind::TokenExchange,
            ),
            ("github", self.github.is_some(), GrantKind::GithubApp),
            (
                "device_authorization_url",
                self.device_authorization_url.is_some(),
                GrantKind::DeviceCode,
            ),
            (
                "authorization_url",
                self.authorization_url.is_some(),
                GrantKind::AuthorizationCode,
            ),
            (
                "redirect_port",
                self.redirect_port.is_some(),
                GrantKind::AuthorizationCode,
            ),
        ] {
            if set && kind != owner {
                return Err(field_err(
                    field,
                    format!("applies to the {owner} grant only, not to {kind}"),
                ));
            }
        }
        Ok(())
    }
}

impl From<Profile> for RawProfile {
    fn from(profile: Profile) -> RawProfile {
        let grant = profile.grant;
        let mut raw = with_shared!(profile => RawProfile {
            // Client credentials, the default, is left out.
            grant: (grant != Grant::ClientCredentials).then(|| grant.kind()),
            subject: None,
            assertion_profile: None,
            google: false,
            subject_profile: None,
            subject_token_type: None,
            actor_profile: None,
            requested_token_type: None,
            github: None,
            device_authorization_url: None,
            authorization_url: None,
            redirect_port: None,
        });
        match grant {
            Grant::ClientCredentials => {}
            Grant::JwtBearer(Assertion::Signed { subject, google }) => {
                raw.subject = subject;
                raw.google = google;
            }
            Grant::JwtBearer(Assertion::Profile(name)) => raw.assertion_profile = Some(name),
            Grant::TokenExchange(exchange) => {
                raw.subject_profile = Some(exchange.subject_profile);
                raw.subject_token_type = exchange.subject_token_type;
                raw.actor_profile = exchange.actor_profile;
                raw.requested_token_type = exchange.requested_token_type;
            }
            Grant::GithubApp(app) => raw.github = Some(*app),
            Grant::DeviceCode {
                device_authorization_url,
            } => raw.device_authorization_url = device_authorization_url,
            Grant::AuthorizationCode {
                authorization_url,
                redirect_port,
            } => {
                raw.authorization_url = authorization_url;
                raw.redirect_port = redirect_port;
            }
        }
        raw
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn flat(grant: GrantKind) -> RawProfile {
        RawProfile {
            token_url: Some("https://idp.example/token".into()),
            client_id: "c".into(),
            grant: Some(grant),
            ..RawProfile::default()
        }
    }

    fn field_of(raw: RawProfile) -> &'static str {
        Profile::try_from(raw).unwrap_err().field
    }

    #[test]
    fn a_setting_of_another_grant_is_refused_by_name() {
        let app = GitHubApp {
            installation_id: 1,
            api_url: super::super::GITHUB_API.into(),
            repositories: vec![],
            permissions: BTreeMap::new(),
        };
        type Set = fn(&mut RawProfile, &GitHubApp);
        let settings: [(&str, GrantKind, Set); 11] = [
            ("subject", GrantKind::JwtBearer, |r, _| {
                r.subject = Some("s".into())
            }),
            ("assertion_profile", GrantKind::JwtBearer, |r, _| {
                r.assertion_profile = Some("a".into())
            }),
            ("google", GrantKind::JwtBearer, |r, _| r.google = true),
            ("subject_profile", GrantKind::TokenExchange, |r, _| {
                r.subject_profile = Some("s".into())
            }),
            ("subject_token_type", GrantKind::TokenExchange, |r, _| {
                r.subject_token_type = Some("t".into())
            }),
            ("actor_profile", GrantKind::TokenExchange, |r, _| {
                r.actor_profile = Some("a".into())
            }),
            ("requested_token_type", GrantKind::TokenExchange, |r, _| {
                r.requested_token_type = Some("t".into())
            }),
            ("github", GrantKind::GithubApp, |r, app| {
                r.github = Some(app.clone())
            }),
            ("device_authorization_url", GrantKind::DeviceCode, |r, _| {
                r.device_authorization_url = Some("https://idp.example/d".into())
            }),
            ("authorization_url", GrantKind::AuthorizationCode, |r, _| {
                r.authorization_url = Some("https://idp.example/a".into())
            }),
            ("redirect_port", GrantKind::AuthorizationCode, |r, _| {
                r.redirect_port = Some(8400)
            }),
        ];
        for (field, owner, set) in settings {
            for grant in GrantKind::ALL {
                let mut raw = flat(grant);
                set(&mut raw, &app);
                // What each grant cannot do without.
                match grant {
                    GrantKind::TokenExchange if field != "subject_profile" => {
                        raw.subject_profile = Some("s".into())
                    }
                    GrantKind::GithubApp if field != "github" => raw.github = Some(app.clone()),
                    _ => {}
                }
                let typed = Profile::try_from(raw.clone());
                if grant == owner {
                    let typed = typed.unwrap_or_else(|e| panic!("{field} on {grant}: {e}"));
                    // And it is written back where it was.
                    assert_eq!(RawProfile::from(typed), raw, "{field}");
                } else {
                    let e = typed.unwrap_err();
                    assert_eq!(e.field, field, "{field} on {grant}: {e}");
                    assert!(e.message.contains(owner.as_str()), "{e}");
                }
            }
        }
    }

    #[test]
    fn what_a_grant_cannot_do_without_is_required() {
        assert_eq!(field_of(flat(GrantKind::TokenExchange)), "subject_profile");
        assert_eq!(field_of(flat(GrantKind::GithubApp)), "github");
        let mut raw = flat(GrantKind::JwtBearer);
        raw.assertion_profile = Some("idp".into());
        raw.subject = Some("alice".into());
        assert_eq!(field_of(raw), "assertion_profile");
    }

    #[test]
    fn a_file_with_a_setting_of_another_grant_names_the_profile_and_the_field() {
        let text = "version = 1\n[profiles.ci]\ntoken_url = \"https://idp.example/t\"\nclient_id = \"c\"\nsubject_profile = \"user\"\n";
        let config = super::super::ConfigFile::parse(text, Path::new("/c/p.toml")).unwrap();
        let message = &config.skipped["ci"].reason;
        assert!(
            message.contains("\"ci\"")
                && message.contains("/c/p.toml (line 2, column 1)")
                && message.contains("subject_profile")
                && message.contains("token-exchange grant only"),
            "{message}"
        );
    }
}
