//! `jwtagent add`, `list`, `show`, `remove`: profile management through the agent.

use crate::args::{AddArgs, KeygenArgs, ProfileArgs, SecretArgs};
use crate::connect;
use crate::error::{CliError, START_HINT};
use crate::output;
use anyhow::Context;
use jwtagent::config::{Alg, AuthMethod, GITHUB_API, GitHubApp, GrantKind, Profile, RawProfile};
use jwtagent::paths::SocketPath;
use jwtagent::protocol::{
    Added, KeyGenerated, ProfileList, ProfileView, Register, Removed, Request, Shown,
};
use jwtagent::secret::Secret;
use std::fmt::Write as _;
use std::io::{IsTerminal, Read};
use std::path::Path;

/// Longest secret or key file read (a 16384-bit RSA PEM is ~13 KB).
const MAX_SECRET: u64 = 1024 * 1024;

/// The profile `args` describe, checked as far as can be without the agent.
fn profile_from(
    name: &str,
    args: &ProfileArgs,
    auth: AuthMethod,
    alg: Option<Alg>,
    certificate: Option<String>,
) -> Result<Profile, CliError> {
    checked(name, typed(name, args.to_raw(auth, alg, certificate)?)?)
}

/// `raw` with its grant's settings in their place: a flag of another grant
/// is refused.
fn typed(name: &str, raw: RawProfile) -> Result<Profile, CliError> {
    Profile::try_from(raw).map_err(|e| CliError::Usage(format!("cannot add profile {name:?}: {e}")))
}

/// `profile` checked as far as can be without the agent, so that a typo
/// does not cost a prompt.
fn checked(name: &str, profile: Profile) -> Result<Profile, CliError> {
    profile
        .validate()
        .map_err(|e| CliError::Usage(format!("cannot add profile {name:?}: {e}")))?;
    jwtagent::config::validate_name(name).map_err(CliError::Usage)?;
    Ok(profile)
}

pub fn add(socket: &SocketPath, args: AddArgs) -> Result<(), CliError> {
    let (profile, secret) = described(&args)?;
    let register = match (args.register, args.registration_token_stdin) {
        (false, _) => None,
        (true, false) => Some(Register::default()),
        (true, true) => Some(Register {
            initial_token: Some(given_secret(None, true, "", || {
                "the initial access token".into()
            })?),
        }),
    };
    let (mut client, _) = connect::connect_or_autostart(socket)?;
    let added: Added = client
        .call(&Request::Add {
            name: args.name.clone(),
            profile: Box::new(profile),
            secret,
            verify: !args.no_verify,
            register,
        })
        .map_err(|e| CliError::from_client(e, START_HINT))?;
    if let Some(warning) = &added.warning {
        eprintln!("warning: {warning}");
    }
    output::print(&added_line(&args.name, &added))
}

/// The profile `add`'s flags describe, checked as far as can be without the
/// agent, and its secret.
fn described(args: &AddArgs) -> Result<(Profile, Option<Secret>), CliError> {
    if let Some(path) = &args.google_credentials {
        let mut raw = args.profile.to_raw(AuthMethod::None, None, None)?;
        let secret = crate::google::import(path, &mut raw)?;
        return Ok((checked(&args.name, typed(&args.name, raw)?)?, Some(secret)));
    }
    let certificate = match &args.cert_file {
        Some(path) => Some(read_certificate(path)?),
        None => None,
    };
    let mut raw = args
        .profile
        .to_raw(AuthMethod::default(), args.alg, certificate)?;
    if let Some(app) = args.github_app {
        raw.client_id = app.to_string();
        raw.grant = Some(GrantKind::GithubApp);
        raw.github = Some(GitHubApp {
            installation_id: args.installation.unwrap_or_default(),
            api_url: args
                .api_url
                .clone()
                .unwrap_or_else(|| GITHUB_API.to_string()),
            repositories: args.repositories.clone(),
            permissions: args.permissions.iter().cloned().collect(),
        });
    }
    let command = args.secret_command.as_ref().or(args.key_command.as_ref());
    if let Some(command) = command {
        let option = if args.key_command.is_some() {
            "--key-command"
        } else {
            "--secret-command"
        };
        raw.secret_command = crate::shell::split(command)
            .map_err(|why| CliError::Usage(format!("{option} {command:?}: {why}")))?;
    }
    let mut profile = typed(&args.name, raw)?;
    // A key signs the grant, or authenticates the client.
    let has_key = args.key_file.is_some() || args.key_command.is_some();
    profile.auth = args.auth.unwrap_or(match (profile.signs_grant(), has_key) {
        (true, _) => AuthMethod::None,
        (false, true) => AuthMethod::PrivateKeyJwt,
        (false, false) => AuthMethod::ClientSecretBasic,
    });
    if args.register {
        // The server chooses the client: checked here as the public
        // client it is asked to be.
        profile.auth = AuthMethod::None;
        let mut probe = profile.clone();
        probe.client_id = "registered".into();
        checked(&args.name, probe)?;
        if !profile.grant.is_user() {
            return Err(CliError::Usage(format!(
                "cannot add profile {:?}: --register is for user profiles (--grant device-code or authorization-code)",
                args.name
            )));
        }
        return Ok((profile, None));
    }
    if profile.client_id.is_empty() {
        return Err(CliError::Usage(format!(
            "cannot add profile {:?}: --client-id is required (or --register, for a user profile whose server registers clients)",
            args.name
        )));
    }
    let profile = checked(&args.name, profile)?;
    if command.is_some() {
        // The agent runs the command when it needs the secret.
        return Ok((profile, None));
    }
    let secret = read_secret(args, &profile)?;
    Ok((profile, secret))
}

/// What `add` says it did.
fn added_line(name: &str, added: &Added) -> String {
    let auth = added.profile.profile.auth;
    let verified = match added.verified {
        Some(true) => "; verified: the server issued a token",
        _ => "",
    };
    let verb = if added.created { "Added" } else { "Replaced" };
    let commanded = !added.profile.profile.secret_command.is_empty();
    let place = stored_in(&added.profile);
    let secret_note = match (auth, added.profile.secret_stored) {
        _ if commanded => "secret from its command, none stored".to_string(),
        (AuthMethod::None, _) => "no secret".to_string(),
        (auth, Some(true)) if auth.uses_private_key() => format!("key stored in {place}"),
        (_, Some(true)) => format!("secret stored in {place}"),
        _ => "no secret stored".to_string(),
    };
    let alg = added
        .profile
        .profile
        .alg
        .map(|a| format!(", {a}"))
        .unwrap_or_default();
    let dpop = match added.profile.profile.dpop_alg {
        Some(alg) if added.profile.profile.dpop => {
            format!("; tokens DPoP-bound to a new {alg} key")
        }
        _ => String::new(),
    };
    let revoked = match added.revoked {
        Some(true) => " The replaced profile's sign-in was revoked at the server.",
        Some(false) => " The replaced profile's sign-in was deleted here (see the warning).",
        None => "",
    };
    // A user profile's tokens come once someone signs in.
    let next = if added.profile.profile.grant.is_user() {
        format!(" Next: `jwtagent login {name}` to sign in.")
    } else {
        String::new()
    };
    let registered = match &added.registered {
        Some(r) => format!(
            " Registered client {:?} at the server{}{}.",
            r.client_id,
            if r.confidential {
                " (it made the client confidential: its secret is stored)"
            } else {
                ""
            },
            if r.deletable {
                "; `jwtagent remove` deletes it"
            } else {
                "; the server gave no way to delete it (RFC 7592), so `jwtagent remove` cannot"
            }
        ),
        None => String::new(),
    };
    format!(
        "{verb} profile {name} ({auth}{alg}; {secret_note}{dpop}{verified}).{registered}{revoked}{next}\n"
    )
}

/// `keygen`: the agent makes the key; this prints the public JWKS to register.
pub fn keygen(socket: &SocketPath, args: KeygenArgs) -> Result<(), CliError> {
    // The agent makes the self-signed certificate; the CLI checks the rest
    // (with a stand-in for the certificate, which the profile needs).
    let mtls = args.auth == AuthMethod::SelfSignedTlsClientAuth;
    let placeholder = mtls.then(|| "-----BEGIN CERTIFICATE-----".to_string());
    let alg = (!mtls).then_some(args.alg);
    let mut profile = profile_from(&args.name, &args.profile, args.auth, alg, placeholder)?;
    profile.certificate = None;
    let (mut client, _) = connect::connect_or_autostart(socket)?;
    let generated: KeyGenerated = client
        .call(&Request::Keygen {
            name: args.name.clone(),
            profile: Box::new(profile),
            alg: args.alg,
            force: args.force,
        })
        .map_err(|e| CliError::from_client(e, START_HINT))?;
    let verb = if generated.created {
        "Added"
    } else {
        "Replaced"
    };
    let what = if mtls {
        format!(
            "self_signed_tls_client_auth, {} key and a self-signed certificate for it",
            args.alg
        )
    } else {
        let kid = generated.profile.profile.kid.as_deref().unwrap_or("-");
        format!("private_key_jwt, {}, kid {kid}", args.alg)
    };
    eprintln!(
        "{verb} profile {} ({what}); the private key is in the keyring and never leaves the agent.\nRegister this JWKS for client {:?} with the authorization server (`jwtagent jwks {}` prints it again):",
        args.name, generated.profile.profile.client_id, args.name
    );
    print_json(&generated.jwks)
}

/// `jwks`: a private_key_jwt profile's public key, as a JWKS.
pub fn jwks(socket: &SocketPath, name: &str) -> Result<(), CliError> {
    let (mut client, _) = connect::connect_or_autostart(socket)?;
    let jwks: serde_json::Value = client
        .call(&Request::Jwks {
            name: name.to_string(),
        })
        .map_err(|e| CliError::from_client(e, START_HINT))?;
    print_json(&jwks)
}

/// Reads the secret from the one source given, or prompts for it. Never from
/// argv or the environment.
fn read_secret(args: &AddArgs, profile: &Profile) -> Result<Option<Secret>, CliError> {
    let auth = profile.auth;
    let given = args.secret_stdin || args.secret_file.is_some() || args.key_file.is_some();
    if profile.has_private_key() {
        return match &args.key_file {
            Some(path) => {
                let key = read_file("--key-file", path)?;
                convertible_key(path, &key)?;
                Ok(Some(key))
            }
            None if profile.auth.uses_private_key() => Err(CliError::Usage(format!(
                "{auth} needs the private key: add --key-file KEY.pem"
            ))),
            None => Err(CliError::Usage(format!(
                "the {} grant signs with the profile's private key: add --key-file KEY.pem",
                profile.grant.kind()
            ))),
        };
    }
    if auth == AuthMethod::None {
        if given {
            return Err(CliError::Usage(
                "--auth none sends no secret; drop --secret-stdin/--secret-file/--key-file".into(),
            ));
        }
        return Ok(None);
    }
    if args.key_file.is_some() {
        return Err(CliError::Usage(format!(
            "--key-file is for --auth private_key_jwt, tls_client_auth or self_signed_tls_client_auth and for grants signed with a key, not {auth}; use --secret-file for a client secret"
        )));
    }
    let prompt = format!("Client secret for {}: ", args.name);
    let missing = || format!("{auth} needs a client secret");
    given_secret(
        args.secret_file.as_deref(),
        args.secret_stdin,
        &prompt,
        missing,
    )
    .map(Some)
}

/// The secret from `--secret-file`, `--secret-stdin`, or a no-echo prompt
/// on a terminal; `missing` says what needs it when there is none of them.
fn given_secret(
    file: Option<&Path>,
    stdin: bool,
    prompt: &str,
    missing: impl FnOnce() -> String,
) -> Result<Secret, CliError> {
    let mut secret = if let Some(path) = file {
        read_file("--secret-file", path)?
    } else if stdin {
        let mut bytes = Vec::new();
        std::io::stdin()
            .lock()
            .take(MAX_SECRET + 1)
            .read_to_end(&mut bytes)
            .context("cannot read the secret from standard input")?;
        let secret = Secret::new(bytes);
        if secret.len() as u64 > MAX_SECRET {
            return Err(CliError::Usage(
                "the secret on standard input is over 1 MiB".into(),
            ));
        }
        secret
    } else if std::io::stdin().is_terminal() {
        let typed = rpassword::prompt_password(prompt)
            .context("cannot read the secret from the terminal")?;
        Secret::new(typed.into_bytes())
    } else {
        return Err(CliError::Usage(format!(
            "{}: pass --secret-stdin, --secret-file FILE, or run in a terminal to be prompted",
            missing()
        )));
    };
    secret.trim_trailing_newline();
    if secret.is_empty() {
        return Err(CliError::Usage("the client secret is empty".into()));
    }
    if std::str::from_utf8(secret.expose()).is_err() {
        return Err(CliError::Usage(
            "the client secret is not UTF-8 text".into(),
        ));
    }
    Ok(secret)
}

/// `jwtagent secret NAME`: a new secret (or key) for a profile that stays
/// as it is otherwise.
pub fn secret(socket: &SocketPath, args: &SecretArgs) -> Result<(), CliError> {
    let secret = match &args.key_file {
        Some(path) => {
            let key = read_file("--key-file", path)?;
            convertible_key(path, &key)?;
            key
        }
        None => given_secret(
            args.secret_file.as_deref(),
            args.secret_stdin,
            &format!("New secret for {}: ", args.name),
            || format!("profile {} needs its new secret", args.name),
        )?,
    };
    let (mut client, _) = connect::connect_existing(socket)?;
    let saved: Added = client
        .call(&Request::Secret {
            name: args.name.clone(),
            secret,
            verify: !args.no_verify,
        })
        .map_err(|e| CliError::from_client(e, START_HINT))?;
    if let Some(warning) = &saved.warning {
        eprintln!("warning: {warning}");
    }
    let checked = match saved.verified {
        Some(true) => " (checked: the server issued a token with it)",
        Some(false) => " (not checked: this kind of profile gets no token at add)",
        None => " (not checked: --no-verify)",
    };
    output::print(&format!(
        "Replaced the secret of profile {}{checked}; its other settings are unchanged.\n",
        args.name
    ))
}

/// A key file in a format the agent does not take but that converts to one:
/// refused here, with the command that converts this very file. (The agent
/// refuses it too, but does not know the file's name.)
fn convertible_key(path: &Path, key: &Secret) -> Result<(), CliError> {
    let text = std::str::from_utf8(key.expose()).unwrap_or_default();
    let file = crate::shell::word(&path.display().to_string());
    let beside = |suffix: &str| {
        let stem = path.file_stem().unwrap_or_default().to_string_lossy();
        crate::shell::word(
            &path
                .with_file_name(format!("{stem}-{suffix}.pem"))
                .display()
                .to_string(),
        )
    };
    let why = if text.contains("-----BEGIN EC PRIVATE KEY-----") {
        format!(
            "--key-file {file} is a SEC1 EC key (BEGIN EC PRIVATE KEY); convert it to PKCS#8 first: openssl pkcs8 -topk8 -nocrypt -in {file} -out {}",
            beside("pkcs8")
        )
    } else if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        format!(
            "--key-file {file} is encrypted; decrypt it first (jwtagent keeps it in the keyring instead): openssl pkcs8 -in {file} -out {}",
            beside("plain")
        )
    } else if text.contains("-----BEGIN OPENSSH PRIVATE KEY-----") {
        format!(
            "--key-file {file} is an OpenSSH key; convert it to PKCS#8 PEM (in place): ssh-keygen -p -m PKCS8 -f {file}"
        )
    } else {
        return Ok(());
    };
    Err(CliError::Other(anyhow::anyhow!(why)))
}

/// The client certificate of `--cert-file`, as PEM text.
fn read_certificate(path: &Path) -> Result<String, CliError> {
    let text = read_file("--cert-file", path)?;
    let text = std::str::from_utf8(text.expose()).unwrap_or_default();
    if !text.contains("-----BEGIN CERTIFICATE-----") {
        return Err(CliError::Usage(format!(
            "--cert-file {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(text.to_string())
}

/// The file `option` names, as a secret (bounded, text). A key or a
/// certificate must be a regular file; a secret may come through a pipe
/// (`--secret-file <(pass show api)`), read up to the cap.
fn read_file(option: &str, path: &Path) -> Result<Secret, CliError> {
    let unreadable =
        |e: &dyn std::fmt::Display| CliError::Usage(format!("{option} {}: {e}", path.display()));
    let bytes = if option == "--secret-file" {
        let file = std::fs::File::open(path)
            .map_err(|e| unreadable(&format_args!("cannot open it: {e}")))?;
        let mut bytes = Vec::new();
        file.take(MAX_SECRET + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| unreadable(&format_args!("cannot read it: {e}")))?;
        bytes
    } else {
        jwtagent::files::read_regular(path, MAX_SECRET).map_err(|e| unreadable(&e))?
    };
    let secret = Secret::new(bytes);
    if secret.len() as u64 > MAX_SECRET {
        return Err(CliError::Usage(format!(
            "{} is over 1 MiB; is it the right file?",
            path.display()
        )));
    }
    if std::str::from_utf8(secret.expose()).is_err() {
        return Err(CliError::Usage(format!(
            "{} is not text; give a PEM key or a text secret",
            path.display()
        )));
    }
    Ok(secret)
}

pub fn list(socket: &SocketPath, json: bool) -> Result<(), CliError> {
    let (mut client, _) = connect::connect_or_autostart(socket)?;
    if json {
        let list: ProfileList = client
            .call(&Request::List)
            .map_err(|e| CliError::from_client(e, START_HINT))?;
        return print_json(&list.profiles);
    }
    let list: Rows = client
        .call(&Request::List)
        .map_err(|e| CliError::from_client(e, START_HINT))?;
    if list.profiles.is_empty() {
        return output::print(
            "No profiles. Add one with `jwtagent add NAME --token-url URL --client-id ID`.\n",
        );
    }
    let rows = rows(list);
    output::print(&table(["NAME", "AUTH", "CLIENT ID", "ENDPOINT"], &rows))
}

/// `list`'s cells: name, authentication, client id, and the endpoint (and
/// as whom a user profile is signed in).
fn rows(list: Rows) -> Vec<[String; 4]> {
    list.profiles
        .into_iter()
        .map(|p| {
            let endpoint = match (p.profile.issuer, p.profile.token_url) {
                (Some(issuer), _) => format!("{issuer} (issuer)"),
                (_, Some(url)) => url,
                _ => String::new(),
            };
            [
                p.name,
                p.profile.auth.to_string(),
                p.profile.client_id,
                match &p.signed_in_as {
                    Some(whom) => format!(
                        "{endpoint} (signed in as {})",
                        jwtagent::text::escaped(whom)
                    ),
                    None => endpoint,
                },
            ]
        })
        .collect()
}

/// What `list`'s table shows of each profile: read from the `list` answer
/// without the rest of each profile (thousands of profiles are megabytes).
#[derive(serde::Deserialize)]
struct Rows {
    profiles: Vec<Row>,
}

#[derive(serde::Deserialize)]
struct Row {
    name: String,
    profile: RowProfile,
    #[serde(default)]
    signed_in_as: Option<String>,
}

#[derive(serde::Deserialize)]
struct RowProfile {
    #[serde(default)]
    issuer: Option<String>,
    #[serde(default)]
    token_url: Option<String>,
    client_id: String,
    #[serde(default)]
    auth: AuthMethod,
}

/// `rows` under `header`, in columns as wide as their widest cell (the
/// last one unpadded).
fn table(header: [&str; 4], rows: &[[String; 4]]) -> String {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out =
        String::with_capacity(rows.len().saturating_mul(widths.iter().sum::<usize>() + 8));
    let header = header.map(String::from);
    for row in std::iter::once(&header).chain(rows) {
        let _ = writeln!(
            out,
            "{:<w0$}  {:<w1$}  {:<w2$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
    }
    out
}

pub fn show(socket: &SocketPath, name: &str, json: bool) -> Result<(), CliError> {
    let (mut client, _) = connect::connect_or_autostart(socket)?;
    let shown: Shown = client
        .call(&Request::Show {
            name: name.to_string(),
        })
        .map_err(|e| CliError::from_client(e, START_HINT))?;
    if json {
        return print_json(&shown.profile);
    }
    output::print(&render(&shown.profile))
}

/// `show`'s lines for who may have the profile's tokens, and how they are
/// bound.
fn guard_lines(p: &Profile, lines: &mut Vec<(&str, String)>) {
    for pin in &p.allow_exe_sha256 {
        lines.push(("allow_exe_sha256", pin.clone()));
    }
    if p.allow_exe_any_namespace {
        lines.push(("allow_exe_any_namespace", "yes".into()));
    }
    for exe in &p.allow_exe {
        lines.push(("allow_exe", exe.display().to_string()));
    }
    if p.no_forward {
        lines.push(("no_forward", "yes (not served over SSH forwarding)".into()));
    }
    if p.dpop {
        let alg = p.dpop_alg.map(|a| a.to_string()).unwrap_or_default();
        lines.push(("dpop", format!("yes ({alg} key in the keyring)")));
    }
}

fn render(view: &ProfileView) -> String {
    let p = &view.profile;
    let mut lines: Vec<(&str, String)> = vec![("name", view.name.clone())];
    if let Some(issuer) = &p.issuer {
        lines.push(("issuer", issuer.clone()));
    }
    if let Some(url) = &p.token_url {
        lines.push(("token_url", url.clone()));
    }
    lines.push(("client_id", p.client_id.clone()));
    if let Some(uri) = &p.registration_uri {
        lines.push(("registered_at", format!("{uri} (`remove` deletes it)")));
    }
    lines.push(("auth", p.auth.to_string()));
    lines.extend(p.grant.settings());
    if let Some(whom) = &view.signed_in_as {
        lines.push(("signed_in_as", jwtagent::text::escaped(whom).into_owned()));
    }
    if let Some(until) = view.signed_in_until {
        let until = jwtagent::time::rfc3339(until);
        lines.push((
            "signed_in_until",
            format!("{until} (when its refresh token expires)"),
        ));
    }
    if let Some(alg) = p.alg {
        lines.push(("alg", alg.to_string()));
    }
    if let Some(kid) = &p.kid {
        lines.push(("kid", kid.clone()));
    }
    match (&p.assertion_aud, &view.assertion_aud_worked) {
        (Some(aud), _) => lines.push(("assertion_aud", aud.to_string())),
        (None, Some(worked)) => lines.push((
            "assertion_aud",
            format!("auto (the server accepted {worked})"),
        )),
        (None, None) if p.auth.uses_assertion() => lines.push((
            "assertion_aud",
            "auto (the issuer, else the token endpoint)".into(),
        )),
        (None, None) => {}
    }
    if !p.scopes.is_empty() {
        lines.push(("scopes", p.scopes.join(" ")));
    }
    for r in &p.resources {
        lines.push(("resource", r.clone()));
    }
    if let Some(aud) = &p.audience {
        lines.push(("audience", aud.clone()));
    }
    for (k, v) in &p.params {
        lines.push(("param", format!("{k}={v}")));
    }
    if p.certificate.is_some() {
        lines.push((
            "certificate",
            view.certificate_info
                .clone()
                .unwrap_or_else(|| "present, but cannot be read".into()),
        ));
    }
    if let Some(ca) = &p.ca_file {
        lines.push(("ca_file", ca.display().to_string()));
    }
    if let Some(rb) = &p.refresh_before {
        lines.push(("refresh_before", rb.to_string()));
    }
    guard_lines(p, &mut lines);
    control_lines(view, &mut lines);
    lines.push(("secret", secret_line(view)));
    let mut out = String::new();
    for (k, v) in lines {
        let _ = writeln!(out, "{k:<15} {v}");
    }
    out
}

/// `show`'s lines for the profile's lifetime and confirmation.
fn control_lines(view: &ProfileView, lines: &mut Vec<(&str, String)>) {
    let p = &view.profile;
    if let Some(lifetime) = p.lifetime {
        let lifetime = jwtagent::duration::format_duration(lifetime);
        let left = match view.lifetime_left_secs {
            Some(0) | None => format!("ran out: `jwtagent renew {}`", view.name),
            Some(secs) => format!("{} left", crate::output::duration(secs)),
        };
        let remove = if p.lifetime_remove {
            ", then the secret is deleted"
        } else {
            ""
        };
        lines.push(("lifetime", format!("{lifetime} ({left}{remove})")));
    }
    if p.confirm {
        let remember = p.confirm_for.map_or(String::new(), |d| {
            format!(", a yes holds {}", jwtagent::duration::format_duration(d))
        });
        lines.push((
            "confirm",
            format!("yes (asked before each token{remember})"),
        ));
    }
}

/// Where `show` says the profile's secret is.
fn secret_line(view: &ProfileView) -> String {
    let command = view
        .profile
        .secret_command
        .iter()
        .map(|w| crate::shell::word(&jwtagent::text::escaped(w)))
        .collect::<Vec<_>>()
        .join(" ");
    let place = stored_in(view);
    match view.secret_stored {
        None if !command.is_empty() => format!("from `{command}`, run when needed"),
        None => "not used".into(),
        Some(true) => format!("stored in {place}"),
        Some(false) => format!("MISSING from {place}: add the profile again to store it"),
    }
}

/// Where the agent keeps `view`'s secret, as it says ("the keyring" from
/// an agent that does not), its control characters shown escaped.
fn stored_in(view: &jwtagent::protocol::ProfileView) -> String {
    view.stored_in.as_deref().map_or_else(
        || "the keyring".into(),
        |place| jwtagent::text::escaped(place).into(),
    )
}

pub fn renew(socket: &SocketPath, name: &str) -> Result<(), CliError> {
    let (mut client, _) = connect::connect_existing(socket)?;
    let renewed: jwtagent::protocol::Renewed = client
        .call(&Request::Renew {
            name: name.to_string(),
        })
        .map_err(|e| CliError::from_client(e, START_HINT))?;
    output::print(&format!(
        "Renewed profile {name}: served for {}.\n",
        output::duration(renewed.lifetime_left_secs)
    ))
}

pub fn remove(socket: &SocketPath, name: &str) -> Result<(), CliError> {
    let (mut client, _) = connect::connect_or_autostart(socket)?;
    let removed: Removed = client
        .call(&Request::Remove {
            name: name.to_string(),
        })
        .map_err(|e| CliError::from_client(e, START_HINT))?;
    if let Some(warning) = removed.warning {
        eprintln!("jwtagent: warning: {warning}");
    }
    let unregistered = match removed.unregistered {
        Some(true) => " Its registered client is deleted at the server.",
        _ => "",
    };
    output::print(&format!("Removed profile {name}.{unregistered}\n"))
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<(), CliError> {
    let mut text = serde_json::to_string_pretty(value).map_err(anyhow::Error::from)?;
    text.push('\n');
    output::print(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(name: &str, profile: Profile, signed_in_as: Option<&str>) -> ProfileView {
        ProfileView {
            name: name.into(),
            profile: profile.into(),
            secret_stored: None,
            stored_in: None,
            assertion_aud_worked: None,
            certificate_info: None,
            signed_in_as: signed_in_as.map(String::from),
            lifetime_left_secs: None,
            signed_in_until: None,
        }
    }

    #[test]
    fn the_table_reads_its_columns_from_the_list_the_agent_writes() {
        let mut discovered = Profile::new("unused", "c-2", AuthMethod::PrivateKeyJwt);
        discovered.token_url = None;
        discovered.issuer = Some("https://id.example".into());
        discovered.scopes = vec!["api".into()];
        let list = ProfileList {
            profiles: vec![
                view(
                    "api",
                    Profile::new("https://as.example/token", "c-1", AuthMethod::None),
                    None,
                ),
                view("me", discovered, Some("alice\u{1b}[2J")),
            ],
        };
        let wire = serde_json::to_string(&list).unwrap();
        let rows = rows(serde_json::from_str(&wire).unwrap());
        assert_eq!(
            rows,
            [
                ["api", "none", "c-1", "https://as.example/token"].map(String::from),
                [
                    "me",
                    "private_key_jwt",
                    "c-2",
                    "https://id.example (issuer) (signed in as alice\\u{1b}[2J)"
                ]
                .map(String::from),
            ]
        );
        let text = table(["NAME", "AUTH", "CLIENT ID", "ENDPOINT"], &rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "NAME  AUTH             CLIENT ID  ENDPOINT");
        assert_eq!(
            lines[1],
            "api   none             c-1        https://as.example/token"
        );
    }
}
