//! The typed profile: one grant with its own settings, and the settings every
//! grant shares; the checks every profile passes before the agent takes it.

use super::grant::Grant;
use super::values::{
    Alg, AssertionAud, AuthMethod, DEFAULT_DPOP_ALG, FieldError, GENERATED_ALGS, RESERVED_PARAMS,
    RefreshBefore, Sink, check_endpoint, check_resources, check_scopes, field_err,
};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// One profile: where to get tokens and how to authenticate. Each field is
/// documented on `RawProfile`, the flat form the file and the wire hold, and
/// through which it is read and written (and in docs/config.md); the grant's
/// own settings are in [`Grant`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub issuer: Option<String>,
    pub token_url: Option<String>,
    pub client_id: String,
    pub auth: AuthMethod,
    pub alg: Option<Alg>,
    pub kid: Option<String>,
    pub assertion_aud: Option<AssertionAud>,
    pub scopes: Vec<String>,
    pub resources: Vec<String>,
    pub audience: Option<String>,
    pub params: BTreeMap<String, String>,
    pub ca_file: Option<PathBuf>,
    pub certificate: Option<String>,
    pub refresh_before: Option<RefreshBefore>,
    pub allow_exe: Vec<PathBuf>,
    pub allow_exe_sha256: Vec<String>,
    pub allow_exe_any_namespace: bool,
    pub dpop: bool,
    pub no_forward: bool,
    pub dpop_alg: Option<Alg>,
    /// The grant its tokens come from, with that grant's own settings.
    pub grant: Grant,
    pub revocation_url: Option<String>,
    /// RFC 7592: where the client `add --register` registered is read and
    /// deleted (its registration access token is in the store).
    pub registration_uri: Option<String>,
    /// Files the agent keeps holding the current access token.
    pub sinks: Vec<Sink>,
    /// A command that prints the secret (or key) when the agent needs it:
    /// the program, then its arguments; run with no shell. Empty: the
    /// secret is in the store.
    pub secret_command: Vec<String>,
    /// Served for this long after `add` or `renew`, then `expired_lifetime`.
    pub lifetime: Option<std::time::Duration>,
    /// When the lifetime runs out, the secret is deleted from the store too.
    pub lifetime_remove: bool,
    /// A token is served only after the person at the keyboard says yes.
    pub confirm: bool,
    /// How long a yes holds for the same caller.
    pub confirm_for: Option<std::time::Duration>,
    pub generation: u32,
}

impl Profile {
    /// A profile for the token endpoint `token_url` with every option at its
    /// default: the starting point for building one in code.
    pub fn new(
        token_url: impl Into<String>,
        client_id: impl Into<String>,
        auth: AuthMethod,
    ) -> Profile {
        Profile {
            issuer: None,
            token_url: Some(token_url.into()),
            client_id: client_id.into(),
            auth,
            alg: None,
            kid: None,
            assertion_aud: None,
            scopes: vec![],
            resources: vec![],
            audience: None,
            params: BTreeMap::new(),
            ca_file: None,
            certificate: None,
            refresh_before: None,
            allow_exe: vec![],
            allow_exe_sha256: vec![],
            allow_exe_any_namespace: false,
            dpop: false,
            no_forward: false,
            dpop_alg: None,
            grant: Grant::ClientCredentials,
            revocation_url: None,
            registration_uri: None,
            sinks: vec![],
            secret_command: vec![],
            lifetime: None,
            lifetime_remove: false,
            confirm: false,
            confirm_for: None,
            generation: 0,
        }
    }

    /// Whether the agent signs a JWT with the profile's key for the grant
    /// itself: a jwt-bearer assertion of its own, or a GitHub App JWT.
    pub fn signs_grant(&self) -> bool {
        self.grant.signs()
    }

    /// Whether the keyring holds a private key for this profile (not a
    /// shared secret, nor nothing).
    pub fn has_private_key(&self) -> bool {
        self.auth.uses_private_key() || self.signs_grant()
    }

    /// Whether the profile signs JWTs (client assertions or grants): `alg`,
    /// `kid` and `assertion_aud` apply.
    pub fn signs_jwts(&self) -> bool {
        self.auth.uses_assertion() || self.signs_grant()
    }

    /// The other profiles whose tokens this one's requests carry.
    pub fn inputs(&self) -> impl Iterator<Item = &str> {
        self.input_roles().map(|(_, name)| name)
    }

    /// [`Profile::inputs`] with the role each plays: `assertion`,
    /// `subject` or `actor`.
    pub fn input_roles(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.grant.input_roles()
    }

    /// The algorithm of the profile's DPoP key; `None` when it does not use DPoP.
    pub fn dpop_key_alg(&self) -> Option<Alg> {
        self.dpop.then(|| self.dpop_alg.unwrap_or(DEFAULT_DPOP_ALG))
    }

    /// Checks everything that can be checked without I/O or the secret.
    pub fn validate(&self) -> Result<(), FieldError> {
        self.check_endpoints()?;
        self.check_client()?;
        self.check_assertion()?;
        self.check_request()?;
        self.grant
            .check(self.auth, self.issuer.is_some(), self.dpop)?;
        self.check_certificate()?;
        self.check_local()?;
        self.check_sinks()
    }

    /// Sinks: absolute paths, each once, and only for a profile whose
    /// tokens any process of the user may have (a file cannot ask who
    /// reads it, nor sign a DPoP proof).
    fn check_sinks(&self) -> Result<(), FieldError> {
        use std::os::unix::ffi::OsStrExt;
        if self.sinks.is_empty() {
            return Ok(());
        }
        let why = if !self.allow_exe.is_empty() {
            Some("--allow-exe: a file cannot check which program reads it")
        } else if self.confirm {
            Some("--confirm: nobody is asked before a file is read")
        } else if self.dpop {
            Some("--dpop: a token in a file comes without the proofs that bind it")
        } else {
            None
        };
        if let Some(why) = why {
            return Err(field_err(
                "sinks",
                format!("a profile with {why}; drop the sink or that option"),
            ));
        }
        for (i, sink) in self.sinks.iter().enumerate() {
            let bytes = sink.path.as_os_str().as_bytes();
            if !sink.path.is_absolute() || sink.path.file_name().is_none() {
                return Err(field_err(
                    "sinks",
                    format!("{} must be an absolute path to a file", sink.path.display()),
                ));
            }
            if bytes.iter().any(|b| b.is_ascii_control()) {
                return Err(field_err(
                    "sinks",
                    "a path must not contain control characters",
                ));
            }
            if self.sinks[..i].iter().any(|s| s.path == sink.path) {
                return Err(field_err(
                    "sinks",
                    format!("{} is named twice", sink.path.display()),
                ));
            }
        }
        Ok(())
    }

    /// Where tokens come from: an issuer or a token endpoint, not both.
    fn check_endpoints(&self) -> Result<(), FieldError> {
        if let Grant::GithubApp(github) = &self.grant {
            if self.issuer.is_some() || self.token_url.is_some() {
                return Err(field_err(
                    "github",
                    "a GitHub App profile talks to --api-url, not to an --issuer or --token-url",
                ));
            }
            check_endpoint("github.api_url", &github.api_url)?;
            return Ok(());
        }
        match (&self.issuer, &self.token_url) {
            (None, None) => {
                return Err(field_err(
                    "token_url",
                    "a profile needs --issuer URL (discovery) or --token-url URL",
                ));
            }
            (Some(_), Some(_)) => {
                return Err(field_err(
                    "token_url",
                    "give either --issuer (the token endpoint is discovered) or --token-url, not both",
                ));
            }
            _ => {}
        }
        if let Some(issuer) = &self.issuer {
            let url = check_endpoint("issuer", issuer)?;
            if url.query().is_some() {
                return Err(field_err(
                    "issuer",
                    format!("{issuer:?} has a ?query; an issuer identifier has none (RFC 8414)"),
                ));
            }
        }
        if let Some(token_url) = &self.token_url {
            check_endpoint("token_url", token_url)?;
        }
        let own = match &self.grant {
            Grant::DeviceCode {
                device_authorization_url,
            } => ("device_authorization_url", device_authorization_url),
            Grant::AuthorizationCode {
                authorization_url, ..
            } => ("authorization_url", authorization_url),
            _ => ("", &None),
        };
        for (field, url) in [
            own,
            ("revocation_url", &self.revocation_url),
            ("registration_uri", &self.registration_uri),
        ] {
            if let Some(url) = url {
                check_endpoint(field, url)?;
            }
        }
        Ok(())
    }

    fn check_client(&self) -> Result<(), FieldError> {
        if self.client_id.trim().is_empty() {
            return Err(field_err(
                "client_id",
                "a client id is required (--client-id)",
            ));
        }
        if self.client_id.chars().any(char::is_control) {
            return Err(field_err(
                "client_id",
                "must not contain control characters",
            ));
        }
        Ok(())
    }

    /// The client assertion's settings, which only the JWT methods use.
    fn check_assertion(&self) -> Result<(), FieldError> {
        if !self.signs_jwts() {
            for (field, set) in [
                ("alg", self.alg.is_some()),
                ("kid", self.kid.is_some()),
                ("assertion_aud", self.assertion_aud.is_some()),
            ] {
                if set {
                    return Err(field_err(
                        field,
                        format!(
                            "applies only to client_secret_jwt, private_key_jwt and the jwt-bearer grant, not to auth {}",
                            self.auth
                        ),
                    ));
                }
            }
        }
        if let Some(alg) = self.alg {
            match self.auth {
                AuthMethod::ClientSecretJwt if !alg.is_hmac() => {
                    return Err(field_err(
                        "alg",
                        format!(
                            "client_secret_jwt signs with a shared secret: use HS256, HS384 or HS512, not {alg}"
                        ),
                    ));
                }
                AuthMethod::PrivateKeyJwt if alg.is_hmac() => {
                    return Err(field_err(
                        "alg",
                        format!(
                            "private_key_jwt signs with a private key: {alg} is for client_secret_jwt; use RS*, PS*, ES256/384 or EdDSA"
                        ),
                    ));
                }
                _ if self.signs_grant() && alg.is_hmac() => {
                    return Err(field_err(
                        "alg",
                        format!(
                            "the {} grant signs with the profile's private key: use RS*, PS*, ES256/384 or EdDSA, not {alg}",
                            self.grant.kind()
                        ),
                    ));
                }
                _ => {}
            }
        }
        if let Some(kid) = &self.kid
            && (kid.is_empty() || kid.chars().any(char::is_control))
        {
            return Err(field_err("kid", "must be non-empty text"));
        }
        if matches!(self.assertion_aud, Some(AssertionAud::Issuer)) && self.issuer.is_none() {
            return Err(field_err(
                "assertion_aud",
                "is `issuer` but the profile has no --issuer; use token-endpoint or a URL",
            ));
        }
        Ok(())
    }

    /// What the token request carries besides the grant.
    fn check_request(&self) -> Result<(), FieldError> {
        check_scopes(&self.scopes)?;
        check_resources(&self.resources)?;
        if let Some(aud) = &self.audience
            && aud.trim().is_empty()
        {
            return Err(field_err("audience", "must not be empty"));
        }
        for key in self.params.keys() {
            if key.is_empty() {
                return Err(field_err(
                    "params",
                    "a parameter name is empty (write --param KEY=VALUE)",
                ));
            }
            if RESERVED_PARAMS.contains(&key.as_str()) {
                return Err(field_err(
                    "params",
                    format!(
                        "{key:?} is set by jwtagent itself; use the matching option (--scope, --resource, --audience, --auth) instead"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The client certificate: what needs one has one, nothing else has.
    fn check_certificate(&self) -> Result<(), FieldError> {
        match (&self.certificate, self.auth) {
            (None, auth) if auth.uses_mtls() => Err(field_err(
                "certificate",
                format!("auth {auth} needs the client certificate: add --cert-file CERT.pem"),
            )),
            (Some(_), auth) if !auth.uses_private_key() => Err(field_err(
                "certificate",
                format!(
                    "a client certificate goes with tls_client_auth, self_signed_tls_client_auth or private_key_jwt (its key is the profile's key), not with auth {auth}"
                ),
            )),
            (Some(pem), _) if !pem.contains("-----BEGIN CERTIFICATE-----") => Err(field_err(
                "certificate",
                "holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            )),
            _ => Ok(()),
        }
    }

    /// Local settings: the executables allowed, the DPoP key, the CA file.
    fn check_local(&self) -> Result<(), FieldError> {
        for exe in &self.allow_exe {
            if !exe.is_absolute() {
                return Err(field_err(
                    "allow_exe",
                    format!("{} must be an absolute path", exe.display()),
                ));
            }
        }
        for pin in &self.allow_exe_sha256 {
            if pin.len() != 64 || !pin.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(field_err(
                    "allow_exe_sha256",
                    format!(
                        "{pin:?} is not a SHA-256 digest (64 hex digits, as `sha256sum` prints)"
                    ),
                ));
            }
        }
        if self.allow_exe.is_empty()
            && (!self.allow_exe_sha256.is_empty() || self.allow_exe_any_namespace)
        {
            return Err(field_err(
                if self.allow_exe_any_namespace {
                    "allow_exe_any_namespace"
                } else {
                    "allow_exe_sha256"
                },
                "applies to the executables --allow-exe names; add --allow-exe PATH",
            ));
        }
        if let Some(alg) = self.dpop_alg {
            if !self.dpop {
                return Err(field_err(
                    "dpop_alg",
                    "is set but dpop is not; add --dpop (or drop --dpop-alg)",
                ));
            }
            if !GENERATED_ALGS.contains(&alg) {
                return Err(field_err(
                    "dpop_alg",
                    format!("{alg} cannot be used for DPoP keys: use ES256, ES384, EdDSA or RS256"),
                ));
            }
        }
        if let Some(ca) = &self.ca_file
            && !ca.is_absolute()
        {
            return Err(field_err(
                "ca_file",
                format!("{} must be an absolute path", ca.display()),
            ));
        }
        self.check_secret_command()?;
        self.check_controls()
    }

    /// Lifetime and confirmation settings that make sense together.
    fn check_controls(&self) -> Result<(), FieldError> {
        if self.lifetime.is_some_and(|l| l.is_zero()) {
            return Err(field_err("lifetime", "must be longer than 0s"));
        }
        if self.lifetime_remove && self.lifetime.is_none() {
            return Err(field_err(
                "lifetime_remove",
                "applies when the lifetime runs out; add --lifetime DUR",
            ));
        }
        if self.confirm_for.is_some() && !self.confirm {
            return Err(field_err(
                "confirm_for",
                "remembers a yes to --confirm; add --confirm",
            ));
        }
        Ok(())
    }

    /// A command, if any, names a program, within bounds, for a profile
    /// that has a secret or key to get.
    fn check_secret_command(&self) -> Result<(), FieldError> {
        let Some(program) = self.secret_command.first() else {
            return Ok(());
        };
        let why = if program.is_empty() {
            "names no program"
        } else if self.secret_command.len() > MAX_COMMAND_ARGS {
            "has more than 64 arguments"
        } else if self
            .secret_command
            .iter()
            .any(|a| a.len() > MAX_COMMAND_ARG || a.contains('\0'))
        {
            "has an argument over 4 KiB or with a NUL byte"
        } else if self.auth == AuthMethod::None && !self.grant.signs() {
            "is for a profile with a secret or key; this one has --auth none"
        } else {
            return Ok(());
        };
        Err(field_err("secret_command", why))
    }
}

/// Bounds of a `secret_command`.
const MAX_COMMAND_ARGS: usize = 64;
const MAX_COMMAND_ARG: usize = 4096;

impl crate::chain::Inputs for Profile {
    fn input_roles(&self) -> impl Iterator<Item = (&'static str, &str)> {
        Profile::input_roles(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::grant::{Assertion, Exchange, GitHubApp, GrantKind};

    const PEM_CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    fn sink(path: &str) -> Sink {
        Sink {
            path: path.into(),
            format: Default::default(),
            keep: false,
        }
    }

    fn base() -> Profile {
        Profile::new(
            "https://as.example/token",
            "c",
            AuthMethod::ClientSecretBasic,
        )
    }

    fn signed() -> Grant {
        Grant::JwtBearer(Assertion::Signed {
            subject: None,
            google: false,
        })
    }

    /// Each check refuses what it is there for, naming the field; the same
    /// profile without that one setting passes.
    #[test]
    fn every_check_refuses_what_it_is_for_and_names_the_field() {
        type Change = fn(&mut Profile);
        let cases: &[(&str, Change)] = &[
            ("client_id", |p| p.client_id = " ".into()),
            ("client_id", |p| p.client_id = "a\nb".into()),
            ("token_url", |p| p.token_url = None),
            ("token_url", |p| {
                p.token_url = Some("http://as.example/token".into())
            }),
            ("revocation_url", |p| {
                p.revocation_url = Some("http://as.example/r".into())
            }),
            ("registration_uri", |p| {
                p.registration_uri = Some("http://as.example/reg/c".into())
            }),
            ("sinks", |p| p.sinks = vec![sink("relative/token")]),
            ("sinks", |p| p.sinks = vec![sink("/")]),
            ("sinks", |p| p.sinks = vec![sink("/t\n")]),
            ("sinks", |p| p.sinks = vec![sink("/a/t"), sink("/a/t")]),
            ("sinks", |p| {
                p.sinks = vec![sink("/a/t")];
                p.allow_exe = vec!["/usr/bin/curl".into()];
            }),
            ("sinks", |p| {
                p.sinks = vec![sink("/a/t")];
                p.confirm = true;
            }),
            ("sinks", |p| {
                p.sinks = vec![sink("/a/t")];
                p.dpop = true;
            }),
            ("alg", |p| p.alg = Some(Alg::ES256)),
            ("kid", |p| p.kid = Some("k".into())),
            ("assertion_aud", |p| {
                p.assertion_aud = Some(AssertionAud::TokenEndpoint)
            }),
            ("alg", |p| {
                p.auth = AuthMethod::ClientSecretJwt;
                p.alg = Some(Alg::RS256);
            }),
            ("alg", |p| {
                p.auth = AuthMethod::PrivateKeyJwt;
                p.alg = Some(Alg::HS256);
            }),
            ("alg", |p| {
                p.auth = AuthMethod::None;
                p.grant = signed();
                p.alg = Some(Alg::HS384);
            }),
            ("kid", |p| {
                p.auth = AuthMethod::PrivateKeyJwt;
                p.kid = Some(String::new());
            }),
            ("kid", |p| {
                p.auth = AuthMethod::PrivateKeyJwt;
                p.kid = Some("a\u{7}".into());
            }),
            ("assertion_aud", |p| {
                p.auth = AuthMethod::PrivateKeyJwt;
                p.assertion_aud = Some(AssertionAud::Issuer);
            }),
            ("certificate", |p| p.auth = AuthMethod::TlsClientAuth),
            ("certificate", |p| p.certificate = Some(PEM_CERT.into())),
            ("certificate", |p| {
                p.auth = AuthMethod::PrivateKeyJwt;
                p.certificate = Some("not a certificate".into());
            }),
            ("allow_exe", |p| p.allow_exe = vec!["bin/git".into()]),
            ("allow_exe_sha256", |p| {
                p.allow_exe = vec!["/usr/bin/git".into()];
                p.allow_exe_sha256 = vec!["abc".into()];
            }),
            ("allow_exe_sha256", |p| {
                p.allow_exe = vec!["/usr/bin/git".into()];
                p.allow_exe_sha256 = vec!["g".repeat(64)];
            }),
            ("allow_exe_sha256", |p| {
                p.allow_exe_sha256 = vec!["a".repeat(64)]
            }),
            ("allow_exe_any_namespace", |p| {
                p.allow_exe_any_namespace = true
            }),
            ("dpop_alg", |p| p.dpop_alg = Some(Alg::ES256)),
            ("dpop_alg", |p| {
                p.dpop = true;
                p.dpop_alg = Some(Alg::HS256);
            }),
            ("ca_file", |p| p.ca_file = Some("ca.pem".into())),
            ("secret_command", |p| p.secret_command = vec![String::new()]),
            ("secret_command", |p| {
                p.secret_command = vec!["x".into(); 65]
            }),
            ("secret_command", |p| p.secret_command = vec!["a\0b".into()]),
            ("secret_command", |p| {
                p.secret_command = vec!["x".repeat(4097)]
            }),
            ("secret_command", |p| {
                p.auth = AuthMethod::None;
                p.secret_command = vec!["pass".into()];
            }),
            ("lifetime", |p| p.lifetime = Some(std::time::Duration::ZERO)),
            ("lifetime_remove", |p| p.lifetime_remove = true),
            ("confirm_for", |p| {
                p.confirm_for = Some(std::time::Duration::from_secs(1))
            }),
            // The grants.
            ("device_authorization_url", |p| {
                p.auth = AuthMethod::None;
                p.grant = Grant::DeviceCode {
                    device_authorization_url: None,
                };
            }),
            ("device_authorization_url", |p| {
                p.auth = AuthMethod::None;
                p.grant = Grant::DeviceCode {
                    device_authorization_url: Some("http://as.example/device".into()),
                };
            }),
            ("authorization_url", |p| {
                p.auth = AuthMethod::None;
                p.grant = Grant::AuthorizationCode {
                    authorization_url: None,
                    redirect_port: None,
                };
            }),
            ("authorization_url", |p| {
                p.auth = AuthMethod::None;
                p.grant = Grant::AuthorizationCode {
                    authorization_url: Some("http://as.example/authorize".into()),
                    redirect_port: None,
                };
            }),
            ("redirect_port", |p| {
                p.auth = AuthMethod::None;
                p.grant = Grant::AuthorizationCode {
                    authorization_url: Some("https://as.example/authorize".into()),
                    redirect_port: Some(0),
                };
            }),
            ("dpop", |p| {
                p.auth = AuthMethod::None;
                p.dpop = true;
                p.grant = Grant::DeviceCode {
                    device_authorization_url: Some("https://as.example/device".into()),
                };
            }),
            ("auth", |p| p.grant = signed()),
            ("google", |p| {
                p.auth = AuthMethod::PrivateKeyJwt;
                p.grant = Grant::JwtBearer(Assertion::Signed {
                    subject: None,
                    google: true,
                });
            }),
            ("subject", |p| {
                p.auth = AuthMethod::None;
                p.grant = Grant::JwtBearer(Assertion::Signed {
                    subject: Some(" ".into()),
                    google: false,
                });
            }),
            ("subject", |p| {
                p.auth = AuthMethod::None;
                p.grant = Grant::JwtBearer(Assertion::Signed {
                    subject: Some("me\n".into()),
                    google: false,
                });
            }),
            ("subject_token_type", |p| {
                let mut e = Exchange::of("other");
                e.subject_token_type = Some(String::new());
                p.grant = Grant::TokenExchange(Box::new(e));
            }),
            ("requested_token_type", |p| {
                let mut e = Exchange::of("other");
                e.requested_token_type = Some("a\u{1b}".into());
                p.grant = Grant::TokenExchange(Box::new(e));
            }),
            ("github", |p| {
                p.auth = AuthMethod::None;
                p.grant = Grant::GithubApp(Box::new(GitHubApp {
                    installation_id: 1,
                    api_url: "https://api.github.com".into(),
                    repositories: vec![],
                    permissions: Default::default(),
                }));
            }),
        ];
        assert_eq!(base().validate(), Ok(()));
        for (field, change) in cases {
            let mut p = base();
            change(&mut p);
            match p.validate() {
                Err(e) => assert_eq!(e.field, *field, "{e:?}"),
                Ok(()) => panic!("no refusal: expected one of {field}: {p:?}"),
            }
        }
    }

    /// What each refused setting needs, given: accepted.
    #[test]
    fn the_same_settings_with_what_they_need_are_accepted() {
        type Change = fn(&mut Profile);
        let cases: &[Change] = &[
            |p| p.revocation_url = Some("https://as.example/r".into()),
            |p| p.registration_uri = Some("https://as.example/reg/c".into()),
            |p| p.sinks = vec![sink("/a/t"), sink("/a/u")],
            |p| {
                p.auth = AuthMethod::ClientSecretJwt;
                p.alg = Some(Alg::HS512);
            },
            |p| {
                p.auth = AuthMethod::PrivateKeyJwt;
                p.alg = Some(Alg::ES256);
                p.kid = Some("k1".into());
                p.issuer = Some("https://as.example".into());
                p.token_url = None;
                p.assertion_aud = Some(AssertionAud::Issuer);
            },
            |p| {
                p.auth = AuthMethod::TlsClientAuth;
                p.certificate = Some(PEM_CERT.into());
            },
            |p| {
                p.allow_exe = vec!["/usr/bin/git".into()];
                p.allow_exe_sha256 = vec!["aB".repeat(32)];
                p.allow_exe_any_namespace = true;
            },
            |p| {
                p.dpop = true;
                p.dpop_alg = Some(Alg::EdDSA);
            },
            |p| p.ca_file = Some("/etc/ssl/ca.pem".into()),
            |p| p.secret_command = vec!["pass".into(), "show".into(), "x".repeat(4096)],
            |p| p.secret_command = vec!["x".into(); 64],
            |p| {
                p.auth = AuthMethod::None;
                p.grant = signed();
                p.secret_command = vec!["op".into()];
            },
            |p| {
                p.lifetime = Some(std::time::Duration::from_secs(1));
                p.lifetime_remove = true;
                p.confirm = true;
                p.confirm_for = Some(std::time::Duration::from_secs(60));
            },
            |p| {
                p.auth = AuthMethod::None;
                p.issuer = Some("https://as.example".into());
                p.token_url = None;
                p.grant = Grant::DeviceCode {
                    device_authorization_url: None,
                };
            },
            |p| {
                p.auth = AuthMethod::None;
                p.grant = Grant::AuthorizationCode {
                    authorization_url: Some("https://as.example/authorize".into()),
                    redirect_port: Some(8400),
                };
            },
            |p| {
                p.auth = AuthMethod::None;
                p.grant = Grant::JwtBearer(Assertion::Signed {
                    subject: Some("me".into()),
                    google: true,
                });
            },
            |p| {
                p.auth = AuthMethod::PrivateKeyJwt;
                p.grant = signed();
            },
        ];
        for (i, change) in cases.iter().enumerate() {
            let mut p = base();
            change(&mut p);
            assert_eq!(p.validate(), Ok(()), "case {i}: {p:?}");
        }
    }

    #[test]
    fn what_a_profile_says_of_itself() {
        let mut p = base();
        assert!(!p.has_private_key() && !p.signs_grant());
        assert_eq!(p.inputs().count(), 0);
        assert_eq!(p.dpop_key_alg(), None);
        p.dpop = true;
        assert_eq!(p.dpop_key_alg(), Some(crate::config::DEFAULT_DPOP_ALG));
        p.auth = AuthMethod::PrivateKeyJwt;
        assert!(p.has_private_key());
        p.auth = AuthMethod::None;
        p.grant = signed();
        assert!(p.has_private_key() && p.signs_grant());
        assert!(!p.grant.is_user() && !p.grant.is_google());
        p.grant = Grant::JwtBearer(Assertion::Signed {
            subject: Some("someone".into()),
            google: true,
        });
        assert!(p.grant.is_google());
        assert!(
            p.grant
                .settings()
                .iter()
                .any(|(k, v)| *k == "subject" && v == "someone"),
            "{:?}",
            p.grant.settings()
        );
        let mut e = Exchange::of("sub");
        e.actor_profile = Some("act".into());
        p.grant = Grant::TokenExchange(Box::new(e));
        assert_eq!(p.inputs().collect::<Vec<_>>(), ["sub", "act"]);
        assert!(!p.grant.settings().is_empty());
        p.grant = Grant::DeviceCode {
            device_authorization_url: None,
        };
        assert!(p.grant.is_user() && p.grant.kind().is_user());
        assert!(!GrantKind::ClientCredentials.is_user());
        assert!(!GrantKind::TokenExchange.is_user());
    }
}
