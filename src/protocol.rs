//! The wire protocol between the agent and its clients.
//!
//! Newline-delimited JSON over a Unix socket: one request object per line, one
//! response per line, in order. `docs/protocol.md` is the user-facing description;
//! this module is the single place where the shapes are defined.

use crate::config::{Alg, Profile};
use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use std::fmt;

/// Version of the wire protocol, independent of the crate version. Bumped on any
/// incompatible change; the CLI refuses to talk to an agent with another version.
pub const PROTOCOL_VERSION: u32 = 1;

/// Longest request or response line, newline excluded. A longer request is
/// answered with `too_large` and the connection is closed.
pub const MAX_LINE: usize = 64 * 1024;

/// A request, without its `id` (see [`Envelope`]). Tagged by `op` on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Handshake: the agent answers with [`Hello`]. Clients send it first to check
    /// `protocol` before anything else.
    Hello,
    /// Agent and profile state: answered with [`Status`].
    Status,
    /// Ask the agent to shut down cleanly. It answers `{"ok": true}` first, then
    /// stops accepting, lets in-flight requests finish and removes its socket.
    Stop,
    /// Create or replace the profile `name`; `secret` (client secret or private
    /// key PEM) goes to the keyring. Answered with [`Added`].
    Add {
        name: String,
        profile: Box<Profile>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret: Option<Secret>,
        /// Check the profile with a token request first: one the server
        /// refuses is not saved (one it cannot be reached for is, with a
        /// warning). The token is cached.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        verify: bool,
        /// Register the client first (RFC 7591) at the issuer's
        /// registration endpoint: the profile's client id, authentication
        /// and secret are what the server registered.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        register: Option<Register>,
    },
    /// Replace only the secret (client secret or private key) of profile
    /// `name`, keeping every setting and its sign-in; checked with a token
    /// request first when `verify` (one the server refuses keeps the old
    /// secret). Answered with [`Added`].
    Secret {
        name: String,
        secret: Secret,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        verify: bool,
    },
    /// Serve again a profile whose `--lifetime` ran out, for its lifetime.
    /// Answered with [`Renewed`].
    Renew { name: String },
    /// Serve profile `name`'s token on a loopback HTTP endpoint that speaks
    /// a cloud SDK's protocol (`kind`), for as long as the asking process
    /// lives (`jwtagent exec --gcp-metadata`, `--azure-identity`).
    /// Answered with [`EndpointStarted`].
    Endpoint { name: String, kind: EndpointKind },
    /// Profile `name`'s sinks (files the agent keeps holding its current
    /// access token): with `path`, that one is added (or changed), or with
    /// `remove` removed (and its file deleted). Answered with [`SinkList`].
    Sink {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<std::path::PathBuf>,
        #[serde(default)]
        format: crate::config::SinkFormat,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        keep: bool,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        remove: bool,
    },
    /// Move every secret, key and refresh token to the `to` store (the file
    /// store: with its `passphrase`, created if need be): copied and read
    /// back, then the config names the new store, then the old entries are
    /// deleted. Answered with [`Migrated`].
    StoreMigrate {
        to: crate::config::StoreKind,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        passphrase: Option<Secret>,
    },
    /// Delete a profile, its keyring entry and its cached tokens. Answered with
    /// [`Removed`].
    Remove { name: String },
    /// Every profile, without secrets. Answered with [`ProfileList`].
    List,
    /// One profile, without its secret. Answered with [`Shown`].
    Show { name: String },
    /// An access token for profile `name`, from the cache or fetched now.
    /// Answered with [`TokenAnswer`].
    Token {
        name: String,
        /// Seconds the token must still be valid for; a cached token with less
        /// left is replaced first.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min_ttl: Option<u64>,
        /// Scopes to request instead of the profile's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scopes: Option<Vec<String>>,
        /// RFC 8707 resources to request instead of the profile's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resources: Option<Vec<String>>,
        /// Fetch a new token even if a cached one would do.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        force: bool,
        /// Also answer with the ID token the server last issued with it
        /// (profiles with the `openid` scope).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        id_token: bool,
    },
    /// Start signing in as a user for a device-code or authorization-code
    /// profile, or join the sign-in already under way. Answered with
    /// [`LoginStarted`]: what to show the user. The agent then polls the
    /// server (device code) or waits for the browser on its loopback
    /// redirect (authorization code); `login_wait` follows it.
    Login {
        name: String,
        /// The user has no browser here (no display, no `$BROWSER`): an
        /// authorization-code profile signs in with the device flow
        /// instead, when its server offers one and lets the client use it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        headless: bool,
    },
    /// Waits up to `wait_secs` (at most 30) for the sign-in under way for
    /// `name`. Answered with [`LoginProgress`], or the error that ended the
    /// sign-in. A sign-in nobody waits on for 15 s is abandoned.
    LoginWait {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        wait_secs: Option<u64>,
    },
    /// Revoke (RFC 7009) and delete the refresh token of a user profile, and
    /// drop its cached tokens. Answered with [`LoggedOut`].
    Logout { name: String },
    /// Whether user profile `name` is signed in, and as whom. Answered with
    /// [`WhoAmI`].
    Whoami { name: String },
    /// Generate a private key in the agent, keep it in the keyring, and create
    /// (or, with `force`, replace) the private_key_jwt profile `name` with it.
    /// Answered with [`KeyGenerated`]: the public JWKS to register. The private
    /// key is never sent.
    Keygen {
        name: String,
        /// The profile's other settings; `auth`, `alg` and `kid` are set by
        /// the agent (`kid`: the one given, else the key's RFC 7638 thumbprint).
        profile: Box<Profile>,
        alg: Alg,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        force: bool,
    },
    /// The public JWKS of a private_key_jwt profile: `{"keys": [JWK]}`.
    Jwks { name: String },
    /// A DPoP proof (RFC 9449) for one resource request with a DPoP profile's
    /// current token, made with the key the agent keeps. Answered with
    /// [`DpopAnswer`].
    DpopProof {
        name: String,
        /// The request's HTTP method (`htm`).
        method: String,
        /// The request's URL; query and fragment are dropped for `htu`.
        url: String,
        /// A nonce the resource server asked for (`DPoP-Nonce`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nonce: Option<String>,
        /// As for `token`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min_ttl: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scopes: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resources: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        force: bool,
    },
    /// Lock the agent with a passphrase: until `unlock`, it serves nothing but
    /// `hello`, `status`, `unlock` and `stop`, and drops every cached token.
    Lock { passphrase: Secret },
    /// Unlock with the passphrase given to `lock`. A wrong one is answered
    /// after a delay that grows to 10 s.
    Unlock { passphrase: Secret },
}

impl Request {
    /// Every op, as named on the wire: the one list (a test checks it
    /// against [`Request::op`]).
    pub const OPS: &'static [&'static str] = &[
        "hello",
        "status",
        "stop",
        "add",
        "secret",
        "remove",
        "list",
        "show",
        "token",
        "lock",
        "unlock",
        "keygen",
        "jwks",
        "dpop_proof",
        "login",
        "login_wait",
        "logout",
        "whoami",
        "store_migrate",
        "renew",
        "sink",
        "endpoint",
    ];

    /// The op name as it appears on the wire.
    pub fn op(&self) -> &'static str {
        match self {
            Request::Hello => "hello",
            Request::Status => "status",
            Request::Stop => "stop",
            Request::Add { .. } => "add",
            Request::Secret { .. } => "secret",
            Request::Remove { .. } => "remove",
            Request::List => "list",
            Request::Show { .. } => "show",
            Request::Token { .. } => "token",
            Request::Lock { .. } => "lock",
            Request::Unlock { .. } => "unlock",
            Request::Keygen { .. } => "keygen",
            Request::Jwks { .. } => "jwks",
            Request::DpopProof { .. } => "dpop_proof",
            Request::Login { .. } => "login",
            Request::LoginWait { .. } => "login_wait",
            Request::Logout { .. } => "logout",
            Request::Whoami { .. } => "whoami",
            Request::StoreMigrate { .. } => "store_migrate",
            Request::Renew { .. } => "renew",
            Request::Sink { .. } => "sink",
            Request::Endpoint { .. } => "endpoint",
        }
    }
}

/// A request's `id` as the agent keeps it: the exact JSON text the client sent,
/// so that the answer echoes it byte for byte (`18446744073709551616` stays
/// that number, not a float near it).
#[derive(Debug, Clone)]
pub struct Id(Box<RawValue>);

impl Id {
    /// `null`: the id of an answer to a request whose id could not be read.
    pub fn null() -> Id {
        Id(RawValue::NULL.to_owned())
    }

    /// The id of a request or answer line (`null` when it has none).
    pub fn of_line(line: &[u8]) -> Id {
        raw_id(line)
    }

    /// The id's JSON text.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for Id {
    fn eq(&self, other: &Id) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Serialize for Id {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

/// The `id` member of a request line, unparsed; `null` when it is missing or
/// the line is not a JSON object with one `id`.
fn raw_id(line: &[u8]) -> Id {
    #[derive(Deserialize)]
    struct IdOnly<'a> {
        #[serde(borrow)]
        id: Option<&'a RawValue>,
    }
    serde_json::from_slice::<IdOnly>(line)
        .ok()
        .and_then(|only| only.id)
        .map_or_else(Id::null, |raw| Id(raw.to_owned()))
}

/// A request as a client writes it: `{"id": <id>, "op": ..., ...}`.
#[derive(Debug, Serialize)]
pub struct Envelope<'a, I: Serialize = Value> {
    pub id: &'a I,
    #[serde(flatten)]
    pub request: &'a Request,
}

/// Answer to [`Request::Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// [`PROTOCOL_VERSION`] of the agent.
    pub protocol: u32,
    /// The agent's crate version.
    pub version: String,
    /// The agent's process id (what `jwtagent env` prints as `JWTAGENT_PID`).
    pub pid: u32,
    /// The connection comes through SSH forwarding: the agent runs on
    /// another machine (so `env` prints no `JWTAGENT_PID`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forwarded: bool,
}

/// Answer to [`Request::Status`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub protocol: u32,
    pub pid: u32,
    /// Seconds since the agent started.
    pub uptime_secs: u64,
    /// The socket the agent listens on.
    pub socket: String,
    /// The secret store backend in use (`secret-service`, `keyutils`, ...), or
    /// why none is available.
    pub store: Option<String>,
    /// When the store works less well than it could (the kernel keyring for
    /// want of a Secret Service): what that means and what to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_warning: Option<String>,
    /// The file store is sealed (and the agent locked with it): `unlock`
    /// takes its passphrase, and `lock` none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_sealed: Option<Sealed>,
    /// The store is jwtagent's file store, whose passphrase is the lock's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub store_is_file: bool,
    /// The config file's path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// Why the config file cannot be used, when it cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_error: Option<String>,
    /// The profiles of the config file that are not valid, and so not
    /// served (the others are): each with why, and where in the file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped_profiles: Vec<SkippedProfile>,
    /// Whether the agent is locked.
    pub locked: bool,
    /// While locked, what unlocks it: `passphrase` (the one `lock` was
    /// given), `store` (the file store's), or `askpass` (a yes from the
    /// person at the keyboard, after the agent locked itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unlock_with: Option<String>,
    /// Per-profile state.
    pub profiles: Vec<ProfileStatus>,
}

/// How the file store is sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sealed {
    /// The file exists: `unlock` opens it with its passphrase.
    Sealed,
    /// No file yet: the first `unlock` creates it with the passphrase it is given.
    NotCreated,
}

/// A profile of the config file that is not valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedProfile {
    pub name: String,
    /// What is wrong: the file, line and column, the field, and why.
    pub reason: String,
}

/// A profile's token, as `status` sums it up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenState {
    /// No token cached.
    None,
    /// A token is cached and valid.
    Valid,
    /// The cached token has expired.
    Expired,
    /// The last refresh failed; a still-valid token is served meanwhile.
    Failing,
    /// A state a newer agent reports that this client does not know.
    #[serde(other)]
    Unknown,
}

impl fmt::Display for TokenState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenState::None => "none",
            TokenState::Valid => "valid",
            TokenState::Expired => "expired",
            TokenState::Failing => "failing",
            TokenState::Unknown => "unknown",
        })
    }
}

/// One profile's entry in [`Status`]: a summary over its cached tokens (one per
/// scopes/resources combination asked for), and each of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileStatus {
    pub name: String,
    pub token_state: TokenState,
    pub expires_in_secs: Option<i64>,
    pub next_refresh_in_secs: Option<i64>,
    pub last_error: Option<String>,
    /// Consecutive failed refreshes.
    #[serde(default)]
    pub failures: u32,
    /// Every cached token of the profile.
    #[serde(default)]
    pub tokens: Vec<TokenStatus>,
    /// With `assertion_aud` auto: the `aud` the server last accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assertion_aud_worked: Option<String>,
    /// A user profile that has no valid sign-in: `jwtagent login NAME`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub login_required: bool,
    /// A sign-in is under way.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub logging_in: bool,
    /// A user profile signed in: as whom, when its server said (`whoami`
    /// has the rest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_in_as: Option<String>,
    /// A profile with a `lifetime`: what is left of it (`0`: it ran out,
    /// `jwtagent renew NAME`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime_left_secs: Option<u64>,
    /// A user profile signed in: until when (Unix seconds), when its server
    /// said how long its refresh token lasts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_in_until: Option<u64>,
}

/// One cached token (a profile, scopes and resources).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenStatus {
    pub scopes: Vec<String>,
    pub resources: Vec<String>,
    pub expires_in_secs: Option<i64>,
    /// `null` when it is not being refreshed (unused for 30 minutes).
    pub next_refresh_in_secs: Option<i64>,
    pub last_error: Option<String>,
    pub failures: u32,
}

/// A profile as the agent reports it; never includes the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileView {
    pub name: String,
    pub profile: std::sync::Arc<Profile>,
    /// Whether the keyring holds the profile's secret (`show` only; `null` when
    /// not looked up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_stored: Option<bool>,
    /// Where the secret was looked for (`show`) or stored (`add`): "the
    /// kernel keyring", "the encrypted file store", ... (an older agent
    /// does not say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_in: Option<String>,
    /// With `assertion_aud` auto: the `aud` the server last accepted
    /// (`issuer` or `token-endpoint`), once a token was fetched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assertion_aud_worked: Option<String>,
    /// The client certificate's subject, issuer, end of validity and
    /// `x5t#S256`, when the profile has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_info: Option<String>,
    /// A user profile: as whom it is signed in, when its server said
    /// (`whoami` has more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_in_as: Option<String>,
    /// A profile with a `lifetime`: what is left of it (`0`: it ran out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime_left_secs: Option<u64>,
    /// A user profile signed in: until when (Unix seconds), when its server
    /// said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_in_until: Option<u64>,
}

/// How `add` registers its client (RFC 7591).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Register {
    /// The initial access token some servers ask for before they register
    /// a client (RFC 7591 §3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_token: Option<Secret>,
}

/// Answer to [`Request::Add`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Added {
    /// `true` for a new profile, `false` when one was replaced.
    pub created: bool,
    pub profile: ProfileView,
    /// What the user should know: where the secret went (the store's
    /// warning, as in `status`), a verification that could not be made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    /// With `verify`: whether a token was obtained with the profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
    /// The profile replaced was a signed-in user profile: whether its
    /// refresh token was revoked at the server (when not, `warning` says why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<bool>,
    /// With `register`: the client was registered, and whether `remove`
    /// can delete it (the server gave a registration access token, RFC 7592).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered: Option<Registered>,
}

/// The client `add --register` registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registered {
    pub client_id: String,
    /// Whether the server made it a confidential client (with a secret).
    pub confidential: bool,
    /// Whether `remove` can delete the registration (RFC 7592).
    pub deletable: bool,
}

/// Answer to [`Request::Remove`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removed {
    /// Set when the profile is gone but something could not be cleaned up (its
    /// keyring entry, its client's registration); says what to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    /// The profile's client was registered by `add --register`: whether
    /// its registration was deleted at the server (RFC 7592).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unregistered: Option<bool>,
}

/// The protocol an endpoint speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointKind {
    /// The Compute Engine metadata server's token paths (Google's client
    /// libraries, with `GCE_METADATA_HOST`).
    GcpMetadata,
    /// The App Service managed identity protocol (Azure's, with
    /// `IDENTITY_ENDPOINT` and `IDENTITY_HEADER`).
    AzureIdentity,
}

/// Answer to [`Request::Endpoint`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointStarted {
    /// The loopback port (on 127.0.0.1).
    pub port: u16,
    /// The secret every request must carry (`X-IDENTITY-HEADER` for Azure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
}

/// Answer to [`Request::Sink`]: the profile's sinks, after the change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkList {
    pub sinks: Vec<SinkView>,
}

/// One sink, and how its last write went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkView {
    pub path: std::path::PathBuf,
    pub format: crate::config::SinkFormat,
    pub keep: bool,
    /// When the current token was written (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written_at: Option<u64>,
    /// Why the file does not hold a current token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Answer to [`Request::Renew`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Renewed {
    /// How long the profile is served now.
    pub lifetime_left_secs: u64,
}

/// Answer to [`Request::StoreMigrate`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Migrated {
    /// The store the secrets were in, and the one they are in now.
    pub from: String,
    pub to: String,
    /// How many entries (secrets, keys, refresh tokens) moved.
    pub moved: u64,
    /// Set when something needs the user: old entries that could not be
    /// deleted, or an agent whose `--store` overrides the config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// Answer to [`Request::List`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileList {
    pub profiles: Vec<ProfileView>,
}

/// Answer to [`Request::Show`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shown {
    pub profile: ProfileView,
}

/// Answer to [`Request::Token`]. Written through [`TokenAnswerOf`], whose
/// `Serialize` is the one place its wire form is said (its quick writer is
/// held to it by tests).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TokenAnswer {
    pub access_token: Secret,
    /// `Bearer` (or `DPoP` for bound tokens).
    pub token_type: String,
    /// Unix seconds; `null` when the server did not say.
    pub expires_at: Option<u64>,
    /// The granted scope, when the server said.
    pub scope: Option<String>,
    /// RFC 8693: what a token exchange issued (an access token, an ID-JAG,
    /// ...), when the server said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_token_type: Option<String>,
    /// The ID token, when asked for (`id_token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<Secret>,
}

impl Serialize for TokenAnswer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        TokenAnswerOf {
            access_token: &self.access_token,
            token_type: &self.token_type,
            expires_at: self.expires_at,
            scope: self.scope.as_deref(),
            issued_token_type: self.issued_token_type.as_deref(),
            id_token: self.id_token.as_ref(),
        }
        .serialize(s)
    }
}

/// A [`TokenAnswer`] written from what it borrows: the agent answers from
/// the token it holds, without a copy of it made (and wiped) per answer.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct TokenAnswerOf<'a> {
    pub access_token: &'a Secret,
    pub token_type: &'a str,
    pub expires_at: Option<u64>,
    pub scope: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_token_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<&'a Secret>,
}

impl TokenAnswerOf<'_> {
    /// Writes the answer as `serde_json::to_writer` writes its `Serialize`,
    /// byte for byte (a property test holds the two together), but copies a
    /// string with nothing to escape in it (a token nearly always is one)
    /// after checking it 16 bytes at a time: serde_json checks the UTF-8 of
    /// a secret and then looks up each of its bytes in its escape table, a
    /// seventh of the agent's own time on a cached token.
    pub fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        out.extend_from_slice(br#"{"access_token":"#);
        write_text(out, self.access_token.expose(), self.access_token)?;
        out.extend_from_slice(br#","token_type":"#);
        write_text(out, self.token_type.as_bytes(), self.token_type)?;
        out.extend_from_slice(br#","expires_at":"#);
        match self.expires_at {
            Some(at) => serde_json::to_writer(&mut *out, &at)?,
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(br#","scope":"#);
        match self.scope {
            Some(scope) => write_text(out, scope.as_bytes(), scope)?,
            None => out.extend_from_slice(b"null"),
        }
        if let Some(issued) = self.issued_token_type {
            out.extend_from_slice(br#","issued_token_type":"#);
            write_text(out, issued.as_bytes(), issued)?;
        }
        if let Some(id_token) = self.id_token {
            out.extend_from_slice(br#","id_token":"#);
            write_text(out, id_token.expose(), id_token)?;
        }
        out.push(b'}');
        Ok(())
    }
}

/// `value` (whose text is `bytes`) as a JSON string: copied between quotes
/// when every byte is printable ASCII other than `"` and `\` (text serde_json
/// writes as it is), else written by serde_json (which escapes it, or
/// refuses a secret that is not UTF-8).
pub fn write_text<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    bytes: &[u8],
    value: &T,
) -> serde_json::Result<()> {
    write_text_or(out, bytes, |out| serde_json::to_writer(out, value))
}

/// `bytes` as a JSON string, copied between quotes when serde_json would
/// write them as they are (every byte printable ASCII other than `"` and
/// `\`); else what `slow` writes (serde_json's writing of the value whose
/// text they are).
pub fn write_text_or(
    out: &mut Vec<u8>,
    bytes: &[u8],
    slow: impl FnOnce(&mut Vec<u8>) -> serde_json::Result<()>,
) -> serde_json::Result<()> {
    if !as_is(bytes) {
        return slow(out);
    }
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    out.extend_from_slice(bytes);
    out.push(b'"');
    Ok(())
}

/// Whether `bytes` are all printable ASCII other than `"` and `\`. No early
/// exit inside a block of 16, so that the compiler checks a block at once.
fn as_is(bytes: &[u8]) -> bool {
    let plain = |b: u8| (0x20..0x7f).contains(&b) & (b != b'"') & (b != b'\\');
    let mut blocks = bytes.chunks_exact(16);
    for block in &mut blocks {
        if !block.iter().fold(true, |all, &b| all & plain(b)) {
            return false;
        }
    }
    blocks.remainder().iter().all(|&b| plain(b))
}

/// Answer to [`Request::Login`]: what the user is to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "flow", rename_all = "snake_case")]
pub enum LoginStarted {
    /// RFC 8628: enter `user_code` at `verification_uri` on any device.
    Device {
        verification_uri: String,
        user_code: String,
        /// The URI with the code in it, when the server gives one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        verification_uri_complete: Option<String>,
        /// Seconds until the code expires.
        expires_in: u64,
        /// `true` when this joined a sign-in already under way.
        #[serde(default)]
        joined: bool,
    },
    /// Open `url` in a browser on this machine; the server sends it back to
    /// the agent's loopback `redirect_uri`.
    Browser {
        url: String,
        redirect_uri: String,
        /// Seconds until the agent stops waiting.
        expires_in: u64,
        #[serde(default)]
        joined: bool,
    },
}

/// Answer to [`Request::LoginWait`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginProgress {
    /// `true` once signed in; `false` while still waiting for the user.
    pub done: bool,
    /// Signed in: the granted scope, when the server said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Signed in: whether the server issued a refresh token (without one,
    /// the login lasts as long as the access token).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refresh_token: bool,
    /// Still waiting: seconds until the sign-in expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u64>,
}

/// Answer to [`Request::Whoami`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhoAmI {
    /// Whether the keyring holds a refresh token from a sign-in.
    pub signed_in: bool,
    /// The `sub` of the ID token the server issued at sign-in (or on a later
    /// refresh), when it issued one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The first of its `preferred_username`, `email` and `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// When this agent saw the sign-in (Unix seconds); unknown for a sign-in
    /// made before the agent started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
    /// Until when the sign-in lasts (Unix seconds): when its refresh token
    /// expires, if the server said (`refresh_expires_in`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<u64>,
}

/// Answer to [`Request::Logout`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedOut {
    /// Whether there was a refresh token to forget.
    pub was_logged_in: bool,
    /// Whether the server confirmed the revocation (RFC 7009).
    pub revoked: bool,
    /// Something the user should know (no revocation endpoint, the server
    /// refused): the refresh token is deleted all the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// Answer to [`Request::Keygen`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyGenerated {
    /// `true` for a new profile, `false` when one was replaced (`force`).
    pub created: bool,
    pub profile: ProfileView,
    /// The public key to register with the authorization server.
    pub jwks: Value,
}

/// Answer to [`Request::DpopProof`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DpopAnswer {
    /// The proof, for the request's `DPoP` header.
    pub proof: Secret,
    /// The token the proof is for (`ath`), for `Authorization: DPoP ...`.
    pub access_token: Secret,
    pub token_type: String,
    pub expires_at: Option<u64>,
}

/// An empty success body (`stop`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// Stable error codes. Clients match on these, never on the message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The line is not JSON, not an object, or a field has the wrong type.
    BadRequest,
    /// The line is longer than [`MAX_LINE`]; the connection is closed after this.
    TooLarge,
    /// The op is not one the agent implements.
    UnknownOp,
    /// No profile with that name.
    UnknownProfile,
    /// The agent is locked.
    Locked,
    /// The agent's file store is sealed: `unlock` with its passphrase.
    Sealed,
    /// The profile's `--lifetime` ran out: `renew` it.
    ExpiredLifetime,
    /// The profile asks for a confirmation (`--confirm`), and got no yes.
    ConfirmDenied,
    /// The caller is not allowed to do this.
    Denied,
    /// The authorization server refused the request.
    IdpError,
    /// A user profile needs `jwtagent login NAME` (never signed in, or the
    /// server rejected its refresh token).
    LoginRequired,
    /// The authorization server could not be reached.
    Network,
    /// The secret store failed.
    Store,
    /// The configuration is invalid or could not be written.
    Config,
    /// A bug or an unexpected failure in the agent.
    Internal,
    /// A code this client does not know (sent by a newer agent).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::UnknownOp => "unknown_op",
            ErrorCode::UnknownProfile => "unknown_profile",
            ErrorCode::Locked => "locked",
            ErrorCode::Sealed => "sealed",
            ErrorCode::ExpiredLifetime => "expired_lifetime",
            ErrorCode::ConfirmDenied => "confirm_denied",
            ErrorCode::Denied => "denied",
            ErrorCode::IdpError => "idp_error",
            ErrorCode::LoginRequired => "login_required",
            ErrorCode::Network => "network",
            ErrorCode::Store => "store",
            ErrorCode::Config => "config",
            ErrorCode::Internal => "internal",
            ErrorCode::Unknown => "unknown",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `error` object of a failed response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
    /// For `idp_error`: what the authorization server said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp: Option<IdpDetail>,
}

/// The authorization server's own error (RFC 6749 §5.2), passed on verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdpDetail {
    /// HTTP status of the answer.
    pub status: u16,
    /// `error`, e.g. `invalid_client`; absent when the body was not RFC 6749 JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            code,
            message: message.into(),
            idp: None,
        }
    }
}

impl fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

/// A response as it appears on the wire, generic over the success body.
///
/// Success: `{"id": <id>, "ok": true, ...body fields}`.
/// Failure: `{"id": <id>, "ok": false, "error": {"code": ..., "message": ...}}`.
/// The agent writes the id back as the raw text it got ([`Id`]); a client reads
/// it as a [`Value`].
#[derive(Debug, Clone, PartialEq)]
pub struct Response<T, I = Value> {
    pub id: I,
    pub result: Result<T, ErrorBody>,
}

impl<T: Serialize> Response<T, Id> {
    /// Appends the response's JSON to `out`: the bytes its `Serialize`
    /// writes, for less. serde's `flatten` writes a success's body member
    /// by member through a map, and most of the agent's answers are
    /// successes on its request path (a token); here the body is written
    /// as the object it is and spliced in after the `id` and `ok`. A body
    /// that is not a JSON object (none is) goes the `Serialize` way, which
    /// refuses it.
    pub fn write_to(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        self.write_with(out, |body, out| serde_json::to_writer(out, body))
    }

    /// [`Response::write_to`], with a success's body written by
    /// `write_body`: the bytes `serde_json::to_writer` writes for it, by a
    /// faster way (such as [`TokenAnswerOf::write_json`]).
    pub fn write_with(
        &self,
        out: &mut Vec<u8>,
        write_body: impl FnOnce(&T, &mut Vec<u8>) -> serde_json::Result<()>,
    ) -> serde_json::Result<()> {
        let Result::Ok(body) = &self.result else {
            return serde_json::to_writer(out, self);
        };
        let start = out.len();
        out.extend_from_slice(br#"{"id":"#);
        out.extend_from_slice(self.id.as_str().as_bytes());
        out.extend_from_slice(br#","ok":true"#);
        let at = out.len();
        write_body(body, &mut *out)?;
        match &out[at..] {
            b"{}" => {
                out.truncate(at);
                out.push(b'}');
            }
            [b'{', ..] => out[at] = b',',
            _ => {
                out.truncate(start);
                return serde_json::to_writer(out, self);
            }
        }
        Ok(())
    }
}

impl<T: Serialize, I: Serialize> Serialize for Response<T, I> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Ok<'a, T, I> {
            id: &'a I,
            ok: bool,
            #[serde(flatten)]
            body: &'a T,
        }
        #[derive(Serialize)]
        struct Err<'a, I> {
            id: &'a I,
            ok: bool,
            error: &'a ErrorBody,
        }
        match &self.result {
            Result::Ok(body) => Ok {
                id: &self.id,
                ok: true,
                body,
            }
            .serialize(serializer),
            Result::Err(error) => Err {
                id: &self.id,
                ok: false,
                error,
            }
            .serialize(serializer),
        }
    }
}

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for Response<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ResponseVisitor(std::marker::PhantomData))
    }
}

/// Reads a response in one pass when it starts with `id` and `ok`, as the
/// agent writes it: the body's fields go straight into `T`, with no tree
/// of values built first (a `list` of 10,000 profiles is megabytes). In
/// any other order the fields are gathered, then read.
struct ResponseVisitor<T>(std::marker::PhantomData<T>);

impl<'de, T: serde::de::DeserializeOwned> serde::de::Visitor<'de> for ResponseVisitor<T> {
    type Value = Response<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a response object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Response<T>, A::Error> {
        let mut id = None;
        let mut ok = None;
        let mut rest = serde_json::Map::new();
        while id.is_none() || ok.is_none() {
            let Some(key) = map.next_key::<String>()? else {
                break;
            };
            match key.as_str() {
                "id" if id.is_none() => id = Some(map.next_value::<Value>()?),
                "ok" if ok.is_none() => ok = Some(map.next_value::<Value>()?),
                _ => {
                    rest.insert(key, map.next_value()?);
                    break;
                }
            }
        }
        if rest.is_empty() && ok == Some(Value::Bool(true)) {
            let body = T::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
            return Ok(Response {
                id: id.unwrap_or(Value::Null),
                result: Ok(body),
            });
        }
        while let Some((key, value)) = map.next_entry::<String, Value>()? {
            rest.insert(key, value);
        }
        gathered(id, ok, rest)
    }
}

/// A response's fields, gathered: its body or its error.
fn gathered<T: serde::de::DeserializeOwned, E: serde::de::Error>(
    id: Option<Value>,
    ok: Option<Value>,
    mut rest: serde_json::Map<String, Value>,
) -> Result<Response<T>, E> {
    let id = id.or_else(|| rest.remove("id")).unwrap_or(Value::Null);
    let ok = match ok.or_else(|| rest.remove("ok")) {
        Some(Value::Bool(ok)) => ok,
        _ => return Err(E::custom("response has no boolean `ok` field")),
    };
    let result = if ok {
        Result::Ok(T::deserialize(Value::Object(rest)).map_err(E::custom)?)
    } else {
        let error = rest
            .remove("error")
            .ok_or_else(|| E::custom("failed response has no `error` field"))?;
        Result::Err(ErrorBody::deserialize(error).map_err(E::custom)?)
    };
    Ok(Response { id, result })
}

/// What the agent makes of one request line, before handling it.
#[derive(Debug, PartialEq)]
pub struct Parsed {
    /// The request's `id`, or `null` when it had none or could not be read.
    pub id: Id,
    pub request: Result<Request, ErrorBody>,
}

/// Parses one request line (without its newline). Never panics: anything that is
/// not a well-formed request becomes an error body to send back.
pub fn parse_request(line: &[u8]) -> Parsed {
    quick_token(line).unwrap_or_else(|| parse_any(line))
}

/// The line nearly every request is, `{"id":1,"op":"token","name":"api"}`
/// (with at most `min_ttl`, `force` and `id_token` besides), read in one
/// pass that borrows its strings; `None` for anything else, which
/// [`parse_any`] then reads. It accepts only lines that `parse_any` reads
/// as the same request (a property test and the request_decoder fuzz
/// target hold it to that):
/// - a name or member written with an escape, a member twice, or one
///   the token op does not take here, fails it;
/// - its id must be an integer of at most 18 digits or a string without
///   an escape (the only ids whose acceptance needs no more reading: an
///   object could name a member twice, a number could be past f64's range).
pub fn quick_token(line: &[u8]) -> Option<Parsed> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Quick<'a> {
        #[serde(borrow, default)]
        id: Option<&'a RawValue>,
        #[serde(borrow)]
        op: &'a str,
        #[serde(borrow)]
        name: &'a str,
        #[serde(default)]
        min_ttl: Option<u64>,
        #[serde(default)]
        force: bool,
        #[serde(default)]
        id_token: bool,
    }
    let quick: Quick = serde_json::from_slice(line).ok()?;
    if quick.op != "token" || !quick.id.is_none_or(|id| plain_id(id.get())) {
        return None;
    }
    Some(Parsed {
        id: quick.id.map_or_else(Id::null, |raw| Id(raw.to_owned())),
        request: Ok(Request::Token {
            name: quick.name.to_string(),
            min_ttl: quick.min_ttl,
            scopes: None,
            resources: None,
            force: quick.force,
            id_token: quick.id_token,
        }),
    })
}

/// An id [`quick_token`] may take as it is: an integer of at most 18
/// digits, or a string with no escape in it.
fn plain_id(raw: &str) -> bool {
    let digits = raw.strip_prefix('-').unwrap_or(raw);
    let integer =
        !digits.is_empty() && digits.len() <= 18 && digits.bytes().all(|b| b.is_ascii_digit());
    let string =
        raw.len() >= 2 && raw.starts_with('"') && raw.ends_with('"') && !raw.contains('\\');
    integer || string
}

/// Parses any request line: the whole line as JSON (refusing a member
/// named twice at any depth), its op, then the op's request.
pub fn parse_any(line: &[u8]) -> Parsed {
    let value: Value = match serde_json::from_slice::<Unique>(line) {
        Ok(Unique(value)) => value,
        Err(e) => {
            return Parsed {
                // A number out of f64's range elsewhere in the line (or as
                // the id) still lets the id be echoed.
                id: raw_id(line),
                request: Err(ErrorBody::new(
                    ErrorCode::BadRequest,
                    format!("request is not valid JSON: {e}"),
                )),
            };
        }
    };
    let Value::Object(mut map) = value else {
        return Parsed {
            id: Id::null(),
            request: Err(ErrorBody::new(
                ErrorCode::BadRequest,
                "request must be a JSON object like {\"id\": 1, \"op\": \"hello\"}",
            )),
        };
    };
    map.remove("id");
    let id = raw_id(line);
    let op = match map.get("op") {
        Some(Value::String(op)) => op.clone(),
        Some(_) => {
            return Parsed {
                id,
                request: Err(ErrorBody::new(
                    ErrorCode::BadRequest,
                    "field `op` must be a string",
                )),
            };
        }
        None => {
            return Parsed {
                id,
                request: Err(ErrorBody::new(
                    ErrorCode::BadRequest,
                    "request has no `op` field",
                )),
            };
        }
    };
    if !Request::OPS.contains(&op.as_str()) {
        return Parsed {
            id,
            request: Err(ErrorBody::new(
                ErrorCode::UnknownOp,
                unknown_op_message(&op),
            )),
        };
    }
    let request = match Request::deserialize(Value::Object(map)) {
        Ok(request) => Ok(request),
        Err(e) => Err(ErrorBody::new(
            ErrorCode::BadRequest,
            format!("invalid `{op}` request: {e}"),
        )),
    };
    Parsed { id, request }
}

/// A JSON value in which no object names a member twice, at any depth.
/// serde_json keeps the last of two `op`s: `{"op":"hello","op":"stop"}`
/// would pass a check of the first and run the second, so such a request is
/// refused outright.
struct Unique(Value);

impl<'de> Deserialize<'de> for Unique {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueVisitor).map(Unique)
    }
}

struct UniqueVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Unique::deserialize(d).map(|u| u.0)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Unique(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Unique(value) = map.next_value()?;
            if members.contains_key(&key) {
                return Err(serde::de::Error::custom(format_args!(
                    "member {key:?} appears twice in one object"
                )));
            }
            members.insert(key, value);
        }
        Ok(Value::Object(members))
    }
}

fn unknown_op_message(op: &str) -> String {
    format!("unknown op `{op}`; known ops: {}", Request::OPS.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_response_is_written_as_its_serialize_writes_it() {
        fn same<T: Serialize>(id: &str, result: Result<T, ErrorBody>) {
            let response = Response {
                id: Id(RawValue::from_string(id.to_string()).unwrap()),
                result,
            };
            let mut written = b"before".to_vec();
            let done = response.write_to(&mut written);
            let serialized = serde_json::to_vec(&response);
            match serialized {
                Ok(serialized) => {
                    assert!(done.is_ok());
                    assert_eq!(
                        String::from_utf8_lossy(&written[6..]),
                        String::from_utf8_lossy(&serialized)
                    );
                }
                Err(_) => assert!(done.is_err()),
            }
        }
        let token = TokenAnswer {
            access_token: Secret::new(b"eyJ\"\x01x".to_vec()),
            token_type: "Bearer".into(),
            expires_at: Some(7),
            scope: None,
            issued_token_type: Some("t".into()),
            id_token: None,
        };
        same("1", Ok(token));
        same(r#""x\"y""#, Ok(Empty {}));
        same(
            "null",
            Ok(Hello {
                protocol: 1,
                version: "v".into(),
                pid: 2,
                forwarded: true,
            }),
        );
        same(
            "{\"a\":[1]}",
            Ok(LoginStarted::Browser {
                url: "https://x".into(),
                redirect_uri: "http://127.0.0.1:9/cb".into(),
                expires_in: 60,
                joined: false,
            }),
        );
        same(
            "2",
            Err::<Empty, _>(ErrorBody::new(ErrorCode::Denied, "no")),
        );
        // Not an object: refused either way.
        same("3", Ok(7u8));
        same("4", Ok(()));
    }

    #[test]
    fn a_token_answer_has_one_wire_form_and_reads_back_from_it() {
        let mut answer = TokenAnswer {
            access_token: Secret::new(b"eyJ.x".to_vec()),
            token_type: "Bearer".into(),
            expires_at: None,
            scope: None,
            issued_token_type: None,
            id_token: None,
        };
        let text = serde_json::to_string(&answer).unwrap();
        assert_eq!(
            text,
            r#"{"access_token":"eyJ.x","token_type":"Bearer","expires_at":null,"scope":null}"#
        );
        assert_eq!(serde_json::from_str::<TokenAnswer>(&text).unwrap(), answer);
        answer.expires_at = Some(1_800_000_000);
        answer.scope = Some("a b".into());
        answer.issued_token_type = Some("urn:ietf:params:oauth:token-type:access_token".into());
        answer.id_token = Some(Secret::new(b"eyJ.id".to_vec()));
        let text = serde_json::to_string(&answer).unwrap();
        assert_eq!(
            text,
            r#"{"access_token":"eyJ.x","token_type":"Bearer","expires_at":1800000000,"scope":"a b","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","id_token":"eyJ.id"}"#
        );
        let mut quick = Vec::new();
        TokenAnswerOf {
            access_token: &answer.access_token,
            token_type: &answer.token_type,
            expires_at: answer.expires_at,
            scope: answer.scope.as_deref(),
            issued_token_type: answer.issued_token_type.as_deref(),
            id_token: answer.id_token.as_ref(),
        }
        .write_json(&mut quick)
        .unwrap();
        assert_eq!(String::from_utf8(quick).unwrap(), text);
        assert_eq!(serde_json::from_str::<TokenAnswer>(&text).unwrap(), answer);
    }

    #[test]
    fn a_token_answer_s_quick_writer_copies_only_what_needs_no_escape() {
        let printable: Vec<u8> = (0x20..0x7f).filter(|b| !b"\"\\".contains(b)).collect();
        assert!(as_is(&printable));
        assert!(as_is(b""));
        // Each byte serde_json escapes, or that is not printable ASCII, at
        // every place in and after the blocks of 16 the check goes by.
        for odd in [0x00, 0x1f, b'"', b'\\', 0x7f, 0x80, 0xff] {
            for at in 0..40 {
                let mut token = vec![b'a'; 40];
                token[at] = odd;
                assert!(!as_is(&token), "{odd:#x} at {at}");
                let token = Secret::new(token);
                let answer = TokenAnswerOf {
                    access_token: &token,
                    token_type: "Bearer",
                    expires_at: None,
                    scope: Some("a\u{7f}\u{e9}"),
                    issued_token_type: None,
                    id_token: Some(&token),
                };
                let mut quick = Vec::new();
                match (answer.write_json(&mut quick), serde_json::to_vec(&answer)) {
                    (Ok(()), Ok(slow)) => assert_eq!(quick, slow, "{odd:#x} at {at}"),
                    (Err(_), Err(_)) => assert!(odd >= 0x80, "{odd:#x} at {at}"),
                    (quick, slow) => panic!("{odd:#x} at {at}: {quick:?} against {slow:?}"),
                }
            }
        }
    }

    #[test]
    fn the_common_token_lines_are_read_in_the_quick_pass() {
        for line in [
            r#"{"id":1,"op":"token","name":"api"}"#,
            r#"{"op":"token","name":"api","min_ttl":60,"force":true}"#,
            r#"{"id":"c-7","op":"token","name":"api","id_token":true}"#,
        ] {
            let quick = quick_token(line.as_bytes()).expect(line);
            assert_eq!(quick, parse_any(line.as_bytes()), "{line}");
        }
        for line in [
            r#"{"id":1,"op":"token","name":"api","scopes":["a"]}"#,
            r#"{"id":1e400,"op":"token","name":"api"}"#,
            r#"{"id":1,"op":"token","name":"a\u0062"}"#,
            r#"{"id":1,"op":"show","name":"api"}"#,
        ] {
            assert!(quick_token(line.as_bytes()).is_none(), "{line}");
        }
    }

    #[test]
    fn a_member_named_twice_is_refused_at_any_depth() {
        for line in [
            r#"{"id":1,"op":"hello","op":"stop"}"#,
            r#"{"id":1,"id":2,"op":"hello"}"#,
            r#"{"id":1,"op":"token","name":"a","name":"b"}"#,
            r#"{"id":1,"op":"add","name":"a","profile":{"client_id":"x","client_id":"y"}}"#,
        ] {
            let p = parse_request(line.as_bytes());
            let e = p.request.unwrap_err();
            assert_eq!(e.code, ErrorCode::BadRequest, "{line}");
            assert!(e.message.contains("appears twice"), "{line}: {}", e.message);
        }
        // The same name in two objects is fine.
        let p = parse_request(br#"{"id":{"op":1},"op":"hello"}"#);
        assert_eq!(p.request, Ok(Request::Hello));
    }

    #[test]
    fn hello_request_parses_and_keeps_any_id() {
        let p = parse_request(br#"{"id": {"x": [1]}, "op": "hello"}"#);
        assert_eq!(p.id.as_str(), r#"{"x": [1]}"#);
        assert_eq!(p.request, Ok(Request::Hello));
    }

    #[test]
    fn a_float_id_comes_back_as_the_same_number() {
        // Found by the request_decoder fuzz target: without serde_json's
        // float_roundtrip, a long float id was answered with a neighbouring
        // float, so a client could not match the answer to its request.
        let line = br#"{"id":8777777777777777777777777777777777777777700000100003,"op":"hello"}"#;
        let parsed = parse_request(line);
        let echoed = serde_json::to_string(&parsed.id).unwrap();
        let sent: Value = serde_json::from_slice(line).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&echoed).unwrap(), sent["id"]);
    }

    #[test]
    fn the_op_list_names_every_request_and_each_parses_as_itself() {
        let s = || Secret::new(b"x".to_vec());
        let profile = || {
            Box::new(crate::config::Profile::new(
                "https://idp.example/token",
                "c",
                crate::config::AuthMethod::None,
            ))
        };
        let n = || "api".to_string();
        // One of each variant: the match in `Request::op` is exhaustive, so a
        // new variant must be added here to compile... and to OPS to pass.
        let all = [
            Request::Hello,
            Request::Status,
            Request::Stop,
            Request::List,
            Request::Add {
                name: n(),
                profile: profile(),
                secret: None,
                verify: true,
                register: None,
            },
            Request::Secret {
                name: n(),
                secret: s(),
                verify: true,
            },
            Request::Remove { name: n() },
            Request::Show { name: n() },
            Request::Token {
                name: n(),
                min_ttl: None,
                scopes: None,
                resources: None,
                force: false,
                id_token: false,
            },
            Request::Login {
                name: n(),
                headless: true,
            },
            Request::LoginWait {
                name: n(),
                wait_secs: Some(5),
            },
            Request::Logout { name: n() },
            Request::Whoami { name: n() },
            Request::StoreMigrate {
                to: crate::config::StoreKind::File,
                passphrase: Some(s()),
            },
            Request::Renew { name: n() },
            Request::Sink {
                name: n(),
                path: Some("/home/u/.kube/token".into()),
                format: crate::config::SinkFormat::Json,
                keep: true,
                remove: false,
            },
            Request::Endpoint {
                name: n(),
                kind: EndpointKind::AzureIdentity,
            },
            Request::Lock { passphrase: s() },
            Request::Unlock { passphrase: s() },
            Request::Keygen {
                name: n(),
                profile: profile(),
                alg: crate::config::Alg::ES256,
                force: false,
            },
            Request::Jwks { name: n() },
            Request::DpopProof {
                name: n(),
                method: "GET".into(),
                url: "https://api.example/".into(),
                nonce: None,
                min_ttl: None,
                scopes: None,
                resources: None,
                force: false,
            },
        ];
        let mut named: Vec<&str> = all.iter().map(Request::op).collect();
        named.sort();
        let mut listed = Request::OPS.to_vec();
        listed.sort();
        assert_eq!(named, listed);
        for request in &all {
            let line = serde_json::to_vec(&Envelope {
                id: &Value::from(1),
                request,
            })
            .unwrap();
            assert_eq!(parse_request(&line).request.as_ref(), Ok(request));
        }
    }

    #[test]
    fn token_states_are_snake_case_and_unknown_ones_still_parse() {
        assert_eq!(
            serde_json::to_string(&TokenState::Failing).unwrap(),
            r#""failing""#
        );
        let valid: TokenState = serde_json::from_str(r#""valid""#).unwrap();
        assert_eq!(valid, TokenState::Valid);
        let newer: TokenState = serde_json::from_str(r#""paused""#).unwrap();
        assert_eq!(newer, TokenState::Unknown);
    }

    #[test]
    fn an_id_is_echoed_as_the_bytes_sent() {
        for id in [
            "18446744073709551616",
            "-99999999999999999999999",
            "1.000000000000000000001",
            "1e400",
            r#""x\u0041""#,
        ] {
            let line = format!(r#"{{"id":{id},"op":"hello"}}"#);
            let parsed = parse_request(line.as_bytes());
            assert_eq!(parsed.id.as_str(), id);
            let echoed = serde_json::to_string(&Response::<Empty, Id> {
                id: parsed.id,
                result: Ok(Empty {}),
            })
            .unwrap();
            assert!(echoed.starts_with(&format!(r#"{{"id":{id},"#)), "{echoed}");
        }
    }

    #[test]
    fn invalid_json_is_bad_request_with_null_id() {
        let p = parse_request(b"{nope");
        assert_eq!(p.id, Id::null());
        assert_eq!(p.request.unwrap_err().code, ErrorCode::BadRequest);
    }

    #[test]
    fn non_object_is_bad_request() {
        let p = parse_request(b"[1,2]");
        assert_eq!(p.request.unwrap_err().code, ErrorCode::BadRequest);
    }

    #[test]
    fn op_of_wrong_type_is_bad_request_and_keeps_id() {
        let p = parse_request(br#"{"id": 7, "op": 3}"#);
        assert_eq!(p.id.as_str(), "7");
        assert_eq!(p.request.unwrap_err().code, ErrorCode::BadRequest);
    }

    #[test]
    fn unknown_op_is_unknown_op() {
        let p = parse_request(br#"{"id": 1, "op": "fly"}"#);
        let err = p.request.unwrap_err();
        assert_eq!(err.code, ErrorCode::UnknownOp);
        assert!(err.message.contains("fly"), "{}", err.message);
    }

    #[test]
    fn success_response_flattens_body_next_to_id_and_ok() {
        let r = Response {
            id: json!(3),
            result: Ok(Hello {
                protocol: 1,
                version: "0.1.0".into(),
                pid: 42,
                forwarded: false,
            }),
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            json!({"id": 3, "ok": true, "protocol": 1, "version": "0.1.0", "pid": 42})
        );
        let back: Response<Hello> = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn a_response_reads_the_same_in_any_order_of_its_fields() {
        let hello = Hello {
            protocol: 1,
            version: "0.1.0".into(),
            pid: 42,
            forwarded: false,
        };
        for line in [
            r#"{"id":3,"ok":true,"protocol":1,"version":"0.1.0","pid":42}"#,
            r#"{"ok":true,"id":3,"pid":42,"protocol":1,"version":"0.1.0"}"#,
            r#"{"id":3,"protocol":1,"ok":true,"version":"0.1.0","pid":42}"#,
            r#"{"protocol":1,"version":"0.1.0","pid":42,"ok":true,"id":3}"#,
        ] {
            let back: Response<Hello> = serde_json::from_str(line).unwrap();
            assert_eq!(back.id, json!(3), "{line}");
            assert_eq!(back.result.unwrap(), hello, "{line}");
        }
        for line in [
            r#"{"id":"a","ok":false,"error":{"code":"too_large","message":"m"}}"#,
            r#"{"error":{"code":"too_large","message":"m"},"ok":false,"id":"a"}"#,
        ] {
            let back: Response<Hello> = serde_json::from_str(line).unwrap();
            assert_eq!(back.id, json!("a"), "{line}");
            assert_eq!(back.result.unwrap_err().code, ErrorCode::TooLarge, "{line}");
        }
        // No id: null, as the agent's answer to a line it could not read.
        let back: Response<Empty> = serde_json::from_str(r#"{"ok":true}"#).unwrap();
        assert_eq!(back.id, Value::Null);
        for (line, why) in [
            (r#"{"id":1,"protocol":1}"#, "no boolean `ok`"),
            (r#"{"id":1,"ok":"yes","protocol":1}"#, "no boolean `ok`"),
            (r#"{"id":1,"ok":false}"#, "no `error`"),
            (r#"{"id":1,"ok":true,"protocol":"one"}"#, "invalid type"),
            (r#"{"protocol":"one","id":1,"ok":true}"#, "invalid type"),
            (r#"[1]"#, "a response object"),
        ] {
            let err = serde_json::from_str::<Response<Hello>>(line).unwrap_err();
            assert!(err.to_string().contains(why), "{line}: {err}");
        }
    }

    #[test]
    fn error_response_has_code_and_message() {
        let r: Response<Empty> = Response {
            id: json!("a"),
            result: Err(ErrorBody::new(ErrorCode::TooLarge, "too long")),
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            json!({"id": "a", "ok": false, "error": {"code": "too_large", "message": "too long"}})
        );
    }

    #[test]
    fn unknown_error_code_from_a_newer_agent_still_parses() {
        let r: Response<Empty> = serde_json::from_str(
            r#"{"id":1,"ok":false,"error":{"code":"brand_new","message":"m"}}"#,
        )
        .unwrap();
        assert_eq!(r.result.unwrap_err().code, ErrorCode::Unknown);
    }

    #[test]
    fn envelope_serializes_id_and_op_together() {
        let id = json!(9);
        let line = serde_json::to_string(&Envelope {
            id: &id,
            request: &Request::Status,
        })
        .unwrap();
        assert_eq!(line, r#"{"id":9,"op":"status"}"#);
    }
}
