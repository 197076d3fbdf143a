//! The command line, as clap derives it. Help texts here are the reference the
//! README and the man page repeat.

use anyhow::Context;
use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use jwtagent::config::{
    Alg, AssertionAud, AuthMethod, GrantKind, RawProfile, RefreshBefore, SinkFormat, StoreKind,
};
use std::path::Path;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "jwtagent",
    version,
    about = "ssh-agent for API tokens: one agent holds OAuth client credentials and serves fresh access tokens over a Unix socket",
    propagate_version = true,
    after_help = "Start with: eval \"$(jwtagent env)\""
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// The agent's socket [default: $JWTAGENT_SOCK, else $XDG_RUNTIME_DIR/jwtagent/agent.sock, else /tmp/jwtagent-$UID/agent.sock]
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_name = "PATH"
    )]
    pub socket: Option<PathBuf>,
    /// How long to wait for the agent to accept the connection and to answer
    /// each request (e.g. 30s, 2m)
    #[arg(long, global = true, help_heading = "Global options", value_name = "DUR", value_parser = parse_timeout, default_value = "60s")]
    pub timeout: std::time::Duration,
    /// Log format on stderr (the filter is JWTAGENT_LOG, default `info`)
    #[arg(long, global = true, help_heading = "Global options", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    /// POSIX sh, bash, zsh
    Sh,
    /// csh, tcsh
    Csh,
    /// fish
    Fish,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print shell commands that point JWTAGENT_SOCK at the agent, starting one if none answers
    ///
    /// Use it as `eval "$(jwtagent env)"` (sh, bash, zsh), `eval "`jwtagent env --shell csh`"`
    /// (csh) or `jwtagent env --shell fish | source` (fish). A live agent is reused; an
    /// agent is never started twice on one socket.
    Env {
        /// Shell syntax to print [default: guessed from $SHELL]
        #[arg(long, value_enum)]
        shell: Option<Shell>,
        /// Do not start an agent; fail (exit 3) if none answers
        #[arg(long)]
        no_start: bool,
    },
    /// Run the agent
    ///
    /// Without -D the agent detaches, and this command returns once its socket
    /// accepts connections (or prints why it could not start and exits non-zero).
    Agent(AgentArgs),
    /// Ask the agent to exit, and print shell commands that unset its variables
    Stop {
        /// Shell syntax to print [default: guessed from $SHELL]
        #[arg(long, value_enum)]
        shell: Option<Shell>,
    },
    /// Show the agent's state and every profile's token state
    Status {
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Create or replace a profile; its secret goes to the OS keyring
    ///
    /// The secret is read from --secret-stdin, --secret-file, --key-file or a
    /// no-echo prompt; never from the command line or the environment.
    Add(Box<AddArgs>),
    /// Replace only the secret (or private key) of a profile, keeping every
    /// other setting and its sign-in
    ///
    /// Checked with a token request first, like `add`: a secret the server
    /// refuses is not saved, and the old one stays. The secret is read from
    /// --secret-stdin, --secret-file, --key-file or a no-echo prompt.
    Secret(SecretArgs),
    /// List profiles
    List {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Show one profile (never its secret)
    Show {
        /// The profile to show
        name: String,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Remove a profile, its keyring entry and its cached tokens
    #[command(visible_alias = "rm")]
    Remove {
        /// The profile to remove (with its keyring entry and cached tokens)
        name: String,
    },
    /// Print an access token for a profile
    Token {
        #[command(flatten)]
        token: TokenArgs,
        /// Print the ID token the server issued with it instead (user profiles
        /// with the `openid` scope)
        #[arg(long)]
        id_token: bool,
        /// Print the token response as JSON: access_token, token_type, expires_at, scope
        #[arg(long)]
        json: bool,
    },
    /// Sign in as yourself for a user profile (device-code or authorization-code)
    ///
    /// Device code: shows a code to enter at the server's address, on any
    /// device. Authorization code: opens the server's sign-in page in a
    /// browser on this machine (and prints its address). The agent does the
    /// rest and keeps the refresh token in the keyring; `jwtagent token NAME`
    /// then serves your tokens. Ctrl-C abandons the sign-in.
    Login {
        /// The user profile to sign in for
        name: String,
        /// Print the address to open instead of opening a browser
        #[arg(long)]
        no_browser: bool,
        /// Sign in again when the profile is signed in already
        #[arg(long)]
        force: bool,
    },
    /// Sign out of a user profile: revoke its refresh token and delete it
    Logout {
        /// The user profile to sign out of
        name: String,
    },
    /// Whether a user profile is signed in, and as whom
    Whoami {
        /// The user profile
        name: String,
        /// Print JSON (signed_in, subject, username, since)
        #[arg(long)]
        json: bool,
    },
    /// Print an `Authorization: Bearer <token>` header for a profile
    ///
    /// For a DPoP profile, give the request's --url (and --method): it prints
    /// `Authorization: DPoP <token>` and a `DPoP: <proof>` header for that request.
    Header {
        #[command(flatten)]
        token: TokenArgs,
        #[command(flatten)]
        proof: ProofArgs,
    },
    /// Print a DPoP proof for one request with a DPoP profile's token
    ///
    /// Send it as the request's `DPoP` header, with `Authorization: DPoP <token>`
    /// (`jwtagent header NAME --url URL` prints both). The key never leaves the agent.
    Dpop {
        #[command(flatten)]
        token: TokenArgs,
        #[command(flatten)]
        proof: ProofArgs,
    },
    /// Generate a key pair in the agent and create a private_key_jwt profile with it
    ///
    /// Prints the public JWKS to register with the authorization server. The
    /// private key stays in the keyring; no command prints or exports it.
    Keygen(Box<KeygenArgs>),
    /// Print the public JWKS of a private_key_jwt profile's key
    Jwks {
        /// A profile with a private key
        name: String,
    },
    /// Run a command with a profile's token in its environment, or served to
    /// it as a cloud SDK asks for one
    ///
    /// The command replaces jwtagent (its exit status and signals are its own);
    /// the token is in $JWTAGENT_TOKEN, or the variable --env names. With
    /// --gcp-metadata or --azure-identity, the agent serves the profile's
    /// token on a loopback endpoint for as long as the command runs, as
    /// Google's metadata server (GCE_METADATA_HOST) or Azure's managed
    /// identity endpoint (IDENTITY_ENDPOINT, IDENTITY_HEADER) would, so that
    /// their client libraries take it unchanged. When the command cannot be
    /// run, jwtagent exits 127 (not found) or 126 (found but not
    /// executable), as a shell does.
    Exec(ExecArgs),
    /// Print a kubectl ExecCredential (client.authentication.k8s.io/v1) for a profile
    Kubectl(TokenArgs),
    /// Act as a git credential helper for a profile
    ///
    /// In git config: credential.https://git.example.com.helper = "!jwtagent git-credential NAME".
    /// `get` answers with the token (as a Bearer credential when git supports it);
    /// `store` and `erase` are accepted and do nothing.
    GitCredential {
        #[command(flatten)]
        token: TokenArgs,
        /// What git asks: get, store or erase
        #[arg(value_enum)]
        operation: GitOperation,
        /// Username given to git when it cannot take a Bearer credential
        #[arg(long, default_value = "x-access-token")]
        username: String,
    },
    /// Lock the agent: it serves nothing until unlocked with the same passphrase
    Lock {
        /// Read the passphrase from standard input instead of prompting
        #[arg(long)]
        passphrase_stdin: bool,
    },
    /// Unlock the agent
    Unlock {
        /// Read the passphrase from standard input instead of prompting
        #[arg(long)]
        passphrase_stdin: bool,
    },
    /// Keep a file holding a profile's current access token
    ///
    /// The agent rewrites PATH (0600, atomically: never seen half-written)
    /// before each token expires, for programs that read a token from a file
    /// (kubectl's tokenFile, AZURE_FEDERATED_TOKEN_FILE); it deletes it when
    /// it stops or locks, the user signs out or the profile is removed,
    /// unless --keep. Without PATH: the profile's sinks.
    Sink(SinkArgs),
    /// Serve again a profile whose --lifetime ran out, for its lifetime
    ///
    /// Reads its secret from the store again, and asks first if the profile
    /// has --confirm.
    Renew {
        /// The profile
        name: String,
    },
    /// The secret store
    Store {
        #[command(subcommand)]
        action: StoreAction,
    },
    /// Show the audit log: every token request and refusal, and every change to the agent, with who asked
    Audit {
        /// Keep printing new entries as they come
        #[arg(short, long)]
        follow: bool,
        /// Print the raw JSON lines
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        filter: AuditFilter,
    },
    /// Print the profile names, one a line, for shell completion (from the
    /// profiles file; no agent needed)
    #[command(hide = true)]
    CompleteProfiles,
    /// Print shell completions (commands, options and profile names)
    ///
    /// bash: `source <(jwtagent completions bash)`; zsh: write it as
    /// `_jwtagent` in a directory of your $fpath; fish: `jwtagent completions
    /// fish > ~/.config/fish/completions/jwtagent.fish`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page jwtagent(1), or a command's (roff), or write them all
    ///
    /// `jwtagent man --dir ~/.local/share/man/man1` installs every page:
    /// jwtagent(1) and jwtagent-COMMAND(1) for each command.
    Man {
        /// The command whose page to print (e.g. add) [default: jwtagent(1)]
        command: Option<String>,
        /// Write every page into this directory instead of printing one
        #[arg(long, value_name = "DIR", conflicts_with = "command")]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GitOperation {
    Get,
    Store,
    Erase,
}

/// What every token-printing command takes.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Profile name
    pub name: String,
    #[command(flatten)]
    pub ask: TokenAsk,
}

/// `exec`'s arguments.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Profile whose token goes in the environment (--env)
    #[arg(required_unless_present_any = ["gcp_metadata", "azure_identity"])]
    pub name: Option<String>,
    #[command(flatten)]
    pub ask: TokenAsk,
    /// Environment variable for the token
    #[arg(long = "env", value_name = "VAR", default_value = "JWTAGENT_TOKEN")]
    pub var: String,
    /// Serve profile NAME's token to the command as the Compute Engine
    /// metadata server does (GCE_METADATA_HOST, GCE_METADATA_IP), for
    /// Google's client libraries (GOOGLE_APPLICATION_CREDENTIALS is unset)
    #[arg(long, value_name = "NAME")]
    pub gcp_metadata: Option<String>,
    /// Serve profile NAME's token to the command as Azure's managed identity
    /// endpoint does (IDENTITY_ENDPOINT, IDENTITY_HEADER), for
    /// DefaultAzureCredential and ManagedIdentityCredential
    #[arg(long, value_name = "NAME")]
    pub azure_identity: Option<String>,
    /// The command and its arguments
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<std::ffi::OsString>,
}

/// How a token is asked for.
#[derive(Debug, Args, Default, Clone)]
pub struct TokenAsk {
    /// The token must still be valid for at least this long (e.g. 5m); a cached one with less left is replaced
    #[arg(long, value_name = "DUR", value_parser = parse_duration_arg)]
    pub min_ttl: Option<std::time::Duration>,
    /// Request this scope instead of the profile's (repeatable)
    #[arg(long = "scope", value_name = "SCOPE")]
    pub scopes: Vec<String>,
    /// Request this RFC 8707 resource instead of the profile's (repeatable)
    #[arg(long = "resource", value_name = "URI")]
    pub resources: Vec<String>,
    /// Fetch a new token even if a cached one is still good
    #[arg(long)]
    pub force: bool,
    /// Fail (exit 1) instead of warning when the server's token lives less
    /// than --min-ttl
    #[arg(long, requires = "min_ttl")]
    pub strict: bool,
}

fn parse_timeout(s: &str) -> Result<std::time::Duration, String> {
    match parse_duration_arg(s)? {
        d if d.is_zero() => Err("a timeout must be longer than 0s".into()),
        d => Ok(d),
    }
}

fn parse_duration_arg(s: &str) -> Result<std::time::Duration, String> {
    jwtagent::duration::parse_duration(s)
}

/// The settings of a profile that `add` and `keygen` share.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("endpoint").args(["issuer", "token_url"])))]
pub struct ProfileArgs {
    /// Issuer URL; the token endpoint is discovered from its metadata
    #[arg(help_heading = "Server", long, value_name = "URL")]
    pub issuer: Option<String>,
    /// Token endpoint URL (instead of --issuer)
    #[arg(help_heading = "Server", long, value_name = "URL")]
    pub token_url: Option<String>,
    /// OAuth client id (from the file with --google-credentials, the app id
    /// with --github-app)
    #[arg(help_heading = "Client authentication", long)]
    pub client_id: Option<String>,
    /// The grant: client-credentials (default), jwt-bearer (RFC 7523: an
    /// assertion signed with --key-file, or --assertion-profile's token),
    /// token-exchange (RFC 8693, with --subject-profile), or a user's tokens
    /// after `jwtagent login`: device-code (RFC 8628) or authorization-code
    /// (a browser, with PKCE)
    #[arg(help_heading = "Grant", long, value_name = "GRANT", value_parser = one_of::<GrantKind>(&GrantKind::ALL.map(GrantKind::as_str)))]
    pub grant: Option<GrantKind>,
    /// jwt-bearer: the assertion's `sub` [default: the client id]; Google:
    /// the user to act as (domain-wide delegation)
    #[arg(help_heading = "Grant", long, value_name = "SUB")]
    pub subject: Option<String>,
    /// jwt-bearer: send this profile's current token as the assertion
    #[arg(help_heading = "Grant", long, value_name = "NAME")]
    pub assertion_profile: Option<String>,
    /// token-exchange: exchange this profile's current token
    #[arg(help_heading = "Grant", long, value_name = "NAME")]
    pub subject_profile: Option<String>,
    /// token-exchange: the subject_token_type [default: what the subject's
    /// server issued, else urn:ietf:params:oauth:token-type:access_token]
    #[arg(help_heading = "Grant", long, value_name = "URI")]
    pub subject_token_type: Option<String>,
    /// token-exchange: this profile's current token is the actor_token
    #[arg(help_heading = "Grant", long, value_name = "NAME")]
    pub actor_profile: Option<String>,
    /// token-exchange: the requested_token_type (e.g.
    /// urn:ietf:params:oauth:token-type:id-jag)
    #[arg(help_heading = "Grant", long, value_name = "URI")]
    pub requested_token_type: Option<String>,
    /// device-code with --token-url: the device authorization endpoint
    #[arg(help_heading = "Server", long, value_name = "URL")]
    pub device_authorization_url: Option<String>,
    /// authorization-code with --token-url: the authorization endpoint
    #[arg(help_heading = "Server", long, value_name = "URL")]
    pub authorization_url: Option<String>,
    /// Where `logout` revokes the refresh token (RFC 7009) [default: the
    /// issuer's revocation_endpoint]
    #[arg(help_heading = "Server", long, value_name = "URL")]
    pub revocation_url: Option<String>,
    /// authorization-code: a fixed port for the loopback redirect
    /// http://127.0.0.1:PORT/callback [default: any free port]
    #[arg(help_heading = "Server", long, value_name = "PORT")]
    pub redirect_port: Option<u16>,
    /// `kid` header of client assertions [default for a --key-file key: its
    /// RFC 7638 thumbprint, as `jwtagent jwks` prints it; `none`: no kid]
    #[arg(help_heading = "Client authentication", long)]
    pub kid: Option<String>,
    /// `aud` of client assertions: auto (the issuer, or the token endpoint
    /// when the server refuses that), issuer, token-endpoint or a URL
    #[arg(help_heading = "Client authentication", long, value_name = "AUD", value_parser = parse_assertion_aud)]
    pub assertion_aud: Option<AudChoice>,
    /// Scope to request (repeatable)
    #[arg(help_heading = "Tokens", long = "scope", value_name = "SCOPE")]
    pub scopes: Vec<String>,
    /// RFC 8707 resource indicator (repeatable)
    #[arg(help_heading = "Tokens", long = "resource", value_name = "URI")]
    pub resources: Vec<String>,
    /// The non-standard `audience` parameter some servers need
    #[arg(help_heading = "Tokens", long)]
    pub audience: Option<String>,
    /// Extra token request parameter (repeatable)
    #[arg(help_heading = "Tokens", long = "param", value_name = "K=V", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// Extra CA certificates (PEM) to trust for this profile
    #[arg(help_heading = "TLS", long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Refresh when less than this remains: a duration (5m) or a share of the lifetime (20%)
    #[arg(help_heading = "Tokens", long, value_name = "DUR|PCT", value_parser = parse_from_str::<RefreshBefore>)]
    pub refresh_before: Option<RefreshBefore>,
    /// Only this executable may get the profile's tokens (repeatable; default: any process of yours)
    #[arg(help_heading = "Policy", long = "allow-exe", value_name = "PATH")]
    pub allow_exe: Vec<PathBuf>,
    /// With --allow-exe: the executable's SHA-256 (as sha256sum prints it) must also be this (repeatable)
    #[arg(help_heading = "Policy", long = "allow-exe-sha256", value_name = "HEX")]
    pub allow_exe_sha256: Vec<String>,
    /// With --allow-exe: serve callers in other mount or user namespaces too (containers, unshare), if they run the allowed file
    #[arg(help_heading = "Policy", long)]
    pub allow_exe_any_namespace: bool,
    /// Never serve the profile's tokens over SSH forwarding (a socket
    /// forwarded with ssh -R or -L); by default a forwarded agent serves them
    #[arg(help_heading = "Policy", long)]
    pub no_forward: bool,
    /// Serve the profile for DUR after add (or renew), then drop its tokens
    /// and refuse it (expired_lifetime) until `jwtagent renew`, like
    /// ssh-add -t [default: the agent's --lifetime, else no limit]
    #[arg(help_heading = "Policy", long, value_name = "DUR", value_parser = jwtagent::duration::parse_duration)]
    pub lifetime: Option<std::time::Duration>,
    /// When the lifetime runs out, delete the secret from the store too
    /// (renew is then impossible: add the profile again)
    #[arg(help_heading = "Policy", long, requires = "lifetime")]
    pub lifetime_remove: bool,
    /// Ask the person at the keyboard before each token is served, through
    /// JWTAGENT_ASKPASS (else SSH_ASKPASS when there is a display), like
    /// ssh-add -c
    #[arg(help_heading = "Policy", long)]
    pub confirm: bool,
    /// With --confirm: a yes holds for DUR for the same caller
    #[arg(help_heading = "Policy", long, value_name = "DUR", requires = "confirm", value_parser = jwtagent::duration::parse_duration)]
    pub confirm_for: Option<std::time::Duration>,
    /// Keep this file holding the profile's current access token
    /// (repeatable; `jwtagent sink` for the JSON format and --keep)
    #[arg(help_heading = "Tokens", long = "sink", value_name = "PATH")]
    pub sinks: Vec<PathBuf>,
    /// Bind tokens to a key the agent generates and keeps (DPoP, RFC 9449)
    #[arg(help_heading = "Tokens", long)]
    pub dpop: bool,
    /// The DPoP key's algorithm: ES256, ES384, EdDSA or RS256 [default: ES256]
    #[arg(help_heading = "Tokens", long, value_name = "ALG", requires = "dpop", value_parser = one_of::<Alg>(&jwtagent::config::GENERATED_ALGS.map(Alg::as_str)))]
    pub dpop_alg: Option<Alg>,
}

impl ProfileArgs {
    /// The profile the flags describe, flat as they are (and as the file
    /// is), with the settings that do not come from these flags.
    pub fn to_raw(
        &self,
        auth: AuthMethod,
        alg: Option<Alg>,
        certificate: Option<String>,
    ) -> anyhow::Result<RawProfile> {
        let args = self;
        let absolute = |path: &Path| {
            std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))
        };
        let ca_file = match &args.ca_file {
            Some(path) => Some(absolute(path)?),
            None => None,
        };
        Ok(RawProfile {
            issuer: args.issuer.clone(),
            token_url: args.token_url.clone(),
            client_id: args.client_id.clone().unwrap_or_default(),
            auth,
            alg,
            kid: args.kid.clone(),
            assertion_aud: args.assertion_aud.clone().and_then(|choice| choice.0),
            scopes: args.scopes.clone(),
            resources: args.resources.clone(),
            audience: args.audience.clone(),
            params: args.params.iter().cloned().collect(),
            ca_file,
            certificate,
            refresh_before: args.refresh_before,
            allow_exe: args
                .allow_exe
                .iter()
                .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()))
                .collect(),
            allow_exe_sha256: args.allow_exe_sha256.clone(),
            allow_exe_any_namespace: args.allow_exe_any_namespace,
            dpop: args.dpop,
            no_forward: args.no_forward,
            dpop_alg: args.dpop_alg,
            grant: args.grant,
            subject: args.subject.clone(),
            assertion_profile: args.assertion_profile.clone(),
            google: false,
            subject_profile: args.subject_profile.clone(),
            subject_token_type: args.subject_token_type.clone(),
            actor_profile: args.actor_profile.clone(),
            requested_token_type: args.requested_token_type.clone(),
            github: None,
            device_authorization_url: args.device_authorization_url.clone(),
            authorization_url: args.authorization_url.clone(),
            revocation_url: args.revocation_url.clone(),
            registration_uri: None,
            sinks: args
                .sinks
                .iter()
                .map(|p| {
                    Ok(jwtagent::config::Sink {
                        path: absolute(p)?,
                        format: Default::default(),
                        keep: false,
                    })
                })
                .collect::<anyhow::Result<_>>()?,
            secret_command: vec![],
            lifetime: args.lifetime,
            lifetime_remove: args.lifetime_remove,
            confirm: args.confirm,
            confirm_for: args.confirm_for,
            redirect_port: args.redirect_port,
            generation: 0,
        })
    }
}

/// What `jwtagent store` does.
#[derive(Debug, Subcommand)]
pub enum StoreAction {
    /// Move every secret, key and refresh token to another store
    ///
    /// Each entry is copied and read back first; then the config names the
    /// new store; only then are the old entries deleted. A crash at any step
    /// leaves every secret in a store the config names.
    Migrate {
        /// The store to move to: secret-service, keyutils, file, keychain or
        /// windows-credential-manager
        #[arg(long, value_name = "STORE", value_parser = one_of::<StoreKind>(&StoreKind::ALL.map(StoreKind::as_str)))]
        to: StoreKind,
        /// With --to file: read the store's passphrase from standard input
        /// instead of prompting
        #[arg(long)]
        passphrase_stdin: bool,
    },
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("secret_source").args(["secret_stdin", "secret_file", "key_file"])))]
pub struct SecretArgs {
    /// The profile
    pub name: String,
    /// Read the new client secret (or private key) from standard input
    #[arg(long)]
    pub secret_stdin: bool,
    /// Read the new client secret from a file
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
    /// Read the new private key (PEM) from a file
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Save the new secret without first getting a token with it
    #[arg(long)]
    pub no_verify: bool,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("secret_source").args(["secret_stdin", "secret_file", "key_file"])))]
pub struct AddArgs {
    /// Profile name (letters, digits, '.', '_', '-')
    pub name: String,
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// Client authentication [default: private_key_jwt with --key-file, else client_secret_basic]
    #[arg(help_heading = "Client authentication", long, value_name = "METHOD", value_parser = one_of::<AuthMethod>(&AuthMethod::ALL.map(AuthMethod::as_str)))]
    pub auth: Option<AuthMethod>,
    /// Assertion signing algorithm [default: HS256 for client_secret_jwt, from the key for private_key_jwt]
    #[arg(help_heading = "Client authentication", long, value_parser = one_of::<Alg>(&Alg::ALL.map(Alg::as_str)))]
    pub alg: Option<Alg>,
    /// Read the client secret from standard input
    #[arg(help_heading = "Client authentication", long)]
    pub secret_stdin: bool,
    /// Register a client for this user profile at the issuer (dynamic
    /// client registration, RFC 7591) instead of bringing one: the server
    /// chooses the client id (and any secret); `remove` deletes it
    #[arg(help_heading = "Client authentication", long, requires_all = ["issuer", "grant"], conflicts_with_all = ["client_id", "auth", "alg", "secret_stdin", "secret_file", "key_file", "secret_command", "key_command", "google_credentials", "github_app", "token_url", "cert_file"])]
    pub register: bool,
    /// With --register: read the initial access token the server asks for
    /// before it registers a client from standard input
    #[arg(help_heading = "Client authentication", long, requires = "register")]
    pub registration_token_stdin: bool,
    /// Save the profile without first getting a token with it (by default a
    /// profile the server refuses is not saved)
    #[arg(help_heading = "Tokens", long)]
    pub no_verify: bool,
    /// Read the client secret from a file
    #[arg(help_heading = "Client authentication", long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
    /// Read the private key (PEM) from a file, for private_key_jwt,
    /// tls_client_auth and self_signed_tls_client_auth
    #[arg(help_heading = "Client authentication", long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Keep no secret: the agent runs CMD whenever it needs the client
    /// secret and reads it from its output (no shell; words split as a
    /// shell would): e.g. 'pass show api/client', 'op read
    /// op://vault/api/secret', 'vault kv get -field=secret kv/api'
    #[arg(help_heading = "Client authentication", long, value_name = "CMD", conflicts_with_all = ["secret_stdin", "secret_file", "key_file", "key_command", "google_credentials"])]
    pub secret_command: Option<String>,
    /// Like --secret-command, for the private key (PEM) of private_key_jwt,
    /// mutual TLS or a grant signed with a key
    #[arg(help_heading = "Client authentication", long, value_name = "CMD", conflicts_with_all = ["secret_stdin", "secret_file", "key_file", "google_credentials"])]
    pub key_command: Option<String>,
    /// The client certificate (PEM, chain after it) whose key --key-file
    /// gives: presented in mutual TLS (tls_client_auth,
    /// self_signed_tls_client_auth), or named by its x5t#S256 in
    /// private_key_jwt assertions (Entra ID certificate credentials)
    #[arg(help_heading = "TLS", long, value_name = "FILE", requires = "key_file")]
    pub cert_file: Option<PathBuf>,
    /// Import a Google service-account key file (JSON): the key goes to the
    /// keyring, the rest to the profile; the file is not needed afterwards
    #[arg(help_heading = "Grant", long, value_name = "FILE", conflicts_with_all = ["secret_stdin", "secret_file", "key_file", "issuer", "token_url", "client_id", "auth"])]
    pub google_credentials: Option<PathBuf>,
    /// A GitHub App (its app id): installation tokens, with --installation
    /// and the app's private key (--key-file)
    #[arg(help_heading = "Grant", long, value_name = "APP_ID", requires_all = ["installation", "key_file"], conflicts_with_all = ["issuer", "token_url", "client_id", "auth", "grant"])]
    pub github_app: Option<u64>,
    /// The GitHub App installation id
    #[arg(
        help_heading = "Grant",
        long,
        value_name = "ID",
        requires = "github_app"
    )]
    pub installation: Option<u64>,
    /// The GitHub REST API root (GitHub Enterprise Server: https://HOST/api/v3)
    #[arg(
        help_heading = "Grant",
        long,
        value_name = "URL",
        requires = "github_app"
    )]
    pub api_url: Option<String>,
    /// Limit tokens to this repository (repeatable)
    #[arg(
        help_heading = "Grant",
        long = "repository",
        value_name = "NAME",
        requires = "github_app"
    )]
    pub repositories: Vec<String>,
    /// Limit tokens to this permission (repeatable: contents=read)
    #[arg(help_heading = "Grant", long = "permission", value_name = "NAME=LEVEL", value_parser = parse_param, requires = "github_app")]
    pub permissions: Vec<(String, String)>,
}

#[derive(Debug, Args)]
pub struct SinkArgs {
    /// The profile
    pub name: String,
    /// The file (in a directory of yours that others cannot write to)
    pub path: Option<PathBuf>,
    /// What the file holds: the token alone, or JSON with its type and expiry
    #[arg(long, default_value = "token", value_parser = one_of::<SinkFormat>(&SinkFormat::ALL.map(SinkFormat::as_str)))]
    pub format: SinkFormat,
    /// Leave the file in place when the agent stops or locks, or the user signs out
    #[arg(long, requires = "path", conflicts_with = "remove")]
    pub keep: bool,
    /// Stop keeping PATH, and delete it
    #[arg(long, requires = "path")]
    pub remove: bool,
    /// Print the sinks as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Profile name (letters, digits, '.', '_', '-')
    pub name: String,
    /// Key algorithm: ES256, ES384, EdDSA or RS256 (RSA 2048)
    #[arg(long, value_name = "ALG", value_parser = one_of::<Alg>(&jwtagent::config::GENERATED_ALGS.map(Alg::as_str)))]
    pub alg: Alg,
    /// Replace an existing profile and its key (the old key stops working)
    #[arg(long)]
    pub force: bool,
    /// private_key_jwt, or self_signed_tls_client_auth (the agent also makes a
    /// self-signed certificate for the key, valid for two years)
    #[arg(long, value_name = "METHOD", default_value = "private_key_jwt", value_parser = parse_keygen_auth)]
    pub auth: AuthMethod,
    #[command(flatten)]
    pub profile: ProfileArgs,
}

fn parse_keygen_auth(s: &str) -> Result<AuthMethod, String> {
    match s.parse()? {
        auth @ (AuthMethod::PrivateKeyJwt | AuthMethod::SelfSignedTlsClientAuth) => Ok(auth),
        other => Err(format!(
            "keygen makes keys for private_key_jwt and self_signed_tls_client_auth, not {other}"
        )),
    }
}

/// For a DPoP-bound request: what the proof covers.
#[derive(Debug, Args)]
pub struct ProofArgs {
    /// HTTP method of the request the proof is for
    #[arg(long, value_name = "METHOD", default_value = "GET")]
    pub method: String,
    /// URL of the request the proof is for (query and fragment are not covered)
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// A nonce the resource server asked for in its DPoP-Nonce header
    #[arg(long, value_name = "NONCE")]
    pub nonce: Option<String>,
}

/// One of `words`, parsed into `T`: clap knows the words, so help, errors
/// and the shell completions list them (the grammar is defined once, by the
/// type's `ALL` and `as_str`).
fn one_of<T>(words: &[&'static str]) -> impl clap::builder::TypedValueParser<Value = T>
where
    T: std::str::FromStr<Err = String> + Clone + Send + Sync + 'static,
{
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(words.iter().copied())
        .try_map(|word| word.parse::<T>())
}

fn parse_from_str<T: std::str::FromStr<Err = String>>(s: &str) -> Result<T, String> {
    s.parse()
}

/// `--assertion-aud`: `auto` (the profile names none) or a fixed value.
#[derive(Debug, Clone)]
pub struct AudChoice(pub Option<AssertionAud>);

fn parse_assertion_aud(s: &str) -> Result<AudChoice, String> {
    match s {
        "auto" => Ok(AudChoice(None)),
        _ => s.parse().map(|aud| AudChoice(Some(aud))),
    }
}

fn parse_param(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Stay in the foreground (logs go to stderr)
    #[arg(short = 'D', long)]
    pub foreground: bool,
    /// Where a detached agent writes its log [default: $XDG_STATE_HOME/jwtagent/agent.log]
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
    /// Secret store: auto, secret-service, keyutils or file [default: the config's `store`, else auto]
    #[arg(long, value_name = "STORE", value_parser = one_of::<StoreKind>(&StoreKind::ALL.map(StoreKind::as_str)))]
    pub store: Option<StoreKind>,
    /// Open the file store at start with the passphrase in PATH (its first
    /// line), for a service that starts unattended: `/dev/fd/N`, or a systemd
    /// credential. [default: $CREDENTIALS_DIRECTORY/jwtagent-store-passphrase
    /// when systemd passes one]
    #[arg(long, value_name = "PATH")]
    pub store_passphrase_file: Option<PathBuf>,
    /// The lifetime of profiles added to this agent without --lifetime
    #[arg(long, value_name = "DUR", value_parser = jwtagent::duration::parse_duration)]
    pub lifetime: Option<std::time::Duration>,
    /// Lock the agent after no request for DUR (tokens dropped; the file
    /// store's passphrase, or a yes through askpass, unlocks)
    #[arg(long, value_name = "DUR", value_parser = jwtagent::duration::parse_duration)]
    pub lock_idle: Option<std::time::Duration>,
    /// Lock the agent when the machine suspends or the session locks
    /// (systemd-logind's PrepareForSleep and Lock signals on the system bus)
    #[arg(long)]
    pub lock_on_sleep: bool,
    /// Let connections forwarded over SSH do more than read (hello, token,
    /// header, list, status): add, remove, lock, sign in. Off by default, as
    /// the remote side could otherwise change what this machine trusts
    #[arg(long)]
    pub allow_forwarded_admin: bool,
    /// Internal: set by the parent of a detached agent; readiness is reported on stdout.
    #[arg(long, hide = true)]
    pub detached_child: bool,
}

/// Which audit entries `audit` prints (all of them by default; each
/// option given narrows it).
#[derive(Debug, Clone, Default, Args)]
pub struct AuditFilter {
    /// Only the entries of this profile
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
    /// Only this event (token, dpop_proof, add, remove, keygen, lock, unlock,
    /// login, logout, stop, connect, answer)
    #[arg(long, value_name = "OP")]
    pub op: Option<String>,
    /// Only the entries of this caller: its pid, or its executable's path
    #[arg(long, value_name = "PID|PATH")]
    pub caller: Option<String>,
    /// Only entries from the last DUR (e.g. 10m, 2h, 7d)
    #[arg(long, value_name = "DUR", value_parser = parse_since)]
    pub since: Option<std::time::Duration>,
}

fn parse_since(s: &str) -> Result<std::time::Duration, String> {
    jwtagent::duration::parse_duration(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn add_help_puts_every_option_under_its_heading_and_the_global_ones_apart() {
        let mut cli = Cli::command();
        cli.build();
        let add = cli.find_subcommand("add").unwrap();
        let headings = [
            "Server",
            "Client authentication",
            "Grant",
            "Tokens",
            "Policy",
            "TLS",
        ];
        for arg in add.get_arguments() {
            let Some(long) = arg.get_long() else {
                continue;
            };
            if ["help", "version"].contains(&long) {
                continue;
            }
            let heading = arg.get_help_heading();
            if ["socket", "timeout", "log-format"].contains(&long) {
                assert_eq!(heading, Some("Global options"), "--{long}");
            } else {
                assert!(
                    heading.is_some_and(|h| headings.contains(&h)),
                    "--{long} is under {heading:?}: give it one of {headings:?}"
                );
            }
        }
    }
}
