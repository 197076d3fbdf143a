//! Shell snippets for `env` and `stop`, quoted for each shell's rules.

use crate::args::Shell;
use jwtagent::paths::{PID_ENV, SOCK_ENV};
use std::path::Path;

/// Picks the shell from `$SHELL` when `--shell` is not given, as ssh-agent does.
pub fn detect(explicit: Option<Shell>) -> Shell {
    explicit.unwrap_or_else(|| {
        let shell = std::env::var("SHELL").unwrap_or_default();
        let name = shell.rsplit('/').next().unwrap_or("");
        if name.ends_with("csh") {
            Shell::Csh
        } else if name == "fish" {
            Shell::Fish
        } else {
            Shell::Sh
        }
    })
}

/// The script that sets `JWTAGENT_SOCK` and `JWTAGENT_PID`. Fails only for a
/// socket path no shell can be given safely (not UTF-8, or with a newline).
pub fn env_script(shell: Shell, socket: &Path, pid: Option<u32>) -> Result<String, String> {
    let sock = socket.to_str().ok_or_else(|| {
        format!(
            "socket path {} is not valid UTF-8; choose another with --socket",
            socket.display()
        )
    })?;
    if sock.contains('\n') {
        return Err(format!(
            "socket path {sock:?} contains a newline; choose another with --socket"
        ));
    }
    // Without a pid (an agent on another machine, reached through SSH
    // forwarding), JWTAGENT_PID is left as it is.
    Ok(match shell {
        Shell::Sh => {
            let mut out = format!("{SOCK_ENV}={}; export {SOCK_ENV};\n", quote_sh(sock));
            if let Some(pid) = pid {
                out.push_str(&format!("{PID_ENV}={pid}; export {PID_ENV};\n"));
            }
            out
        }
        Shell::Csh => {
            let mut out = format!("setenv {SOCK_ENV} {};\n", quote_csh(sock));
            if let Some(pid) = pid {
                out.push_str(&format!("setenv {PID_ENV} {pid};\n"));
            }
            out
        }
        Shell::Fish => {
            let mut out = format!("set -gx {SOCK_ENV} {};\n", quote_fish(sock));
            if let Some(pid) = pid {
                out.push_str(&format!("set -gx {PID_ENV} {pid};\n"));
            }
            out
        }
    })
}

/// The script that unsets both variables.
pub fn unset_script(shell: Shell) -> String {
    match shell {
        Shell::Sh => format!("unset {SOCK_ENV};\nunset {PID_ENV};\n"),
        Shell::Csh => format!("unsetenv {SOCK_ENV};\nunsetenv {PID_ENV};\n"),
        Shell::Fish => format!("set -e {SOCK_ENV};\nset -e {PID_ENV};\n"),
    }
}

/// POSIX single quotes: nothing inside is special but `'` itself.
fn quote_sh(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// csh single quotes, except that `!` still triggers history substitution.
fn quote_csh(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''").replace('!', r"'\!'"))
}

/// fish single quotes: `\` and `'` are escaped with a backslash.
fn quote_fish(s: &str) -> String {
    format!("'{}'", s.replace('\\', r"\\").replace('\'', r"\'"))
}

/// `word` as one shell word: as it is when that is safe, else single-quoted.
pub fn word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+,:@%".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// `line` split into words as a POSIX shell splits a simple command:
/// whitespace separates, single quotes keep everything, double quotes keep
/// all but `\\`, `\"`, `\$` and `` \` `` escapes, a backslash outside quotes
/// keeps the next character. Nothing is expanded: no variables, globs or
/// substitutions, and no operators (`;`, `|`, `>` are ordinary characters).
pub fn split(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => words.extend(word.take()),
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err("a single quote is not closed".into()),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('\\' | '"' | '$' | '`')) => w.push(c),
                            Some(c) => {
                                w.push('\\');
                                w.push(c);
                            }
                            None => return Err("a double quote is not closed".into()),
                        },
                        Some(c) => w.push(c),
                        None => return Err("a double quote is not closed".into()),
                    }
                }
            }
            '\\' => match chars.next() {
                Some(c) => word.get_or_insert_with(String::new).push(c),
                None => return Err("it ends with a backslash".into()),
            },
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    if words.is_empty() {
        return Err("it names no command".into());
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    #[test]
    fn commands_split_into_words_as_a_shell_would_without_expanding() {
        let split = |s: &str| super::split(s).unwrap();
        assert_eq!(
            split("pass show api/client"),
            ["pass", "show", "api/client"]
        );
        assert_eq!(
            split(r#"op read 'op://My Vault/api/secret'  "a \"b\" \$x" c\ d ''"#),
            [
                "op",
                "read",
                "op://My Vault/api/secret",
                r#"a "b" $x"#,
                "c d",
                ""
            ]
        );
        assert_eq!(
            split("sh -c 'echo $X; ls | wc'"),
            ["sh", "-c", "echo $X; ls | wc"]
        );
        assert_eq!(split(r#"a"b"'c'"#), ["abc"]);
        for bad in ["", "   ", "'open", "\"open", "end\\"] {
            assert!(super::split(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn shell_words_are_quoted_only_when_they_need_it() {
        assert_eq!(
            super::word("/home/me/keys/app.pem"),
            "/home/me/keys/app.pem"
        );
        assert_eq!(super::word("my key.pem"), "'my key.pem'");
        assert_eq!(super::word("it's.pem"), "'it'\\''s.pem'");
        assert_eq!(super::word("$(rm -rf ~).pem"), "'$(rm -rf ~).pem'");
    }

    use super::*;

    #[test]
    fn sh_script_quotes_the_path_and_exports_both() {
        let s = env_script(Shell::Sh, Path::new("/tmp/it's here/a.sock"), Some(42)).unwrap();
        assert_eq!(
            s,
            "JWTAGENT_SOCK='/tmp/it'\\''s here/a.sock'; export JWTAGENT_SOCK;\nJWTAGENT_PID=42; export JWTAGENT_PID;\n"
        );
    }

    #[test]
    fn csh_escapes_history_bang() {
        assert_eq!(quote_csh("a!b"), r"'a'\!'b'");
    }

    #[test]
    fn fish_escapes_backslash_and_quote() {
        assert_eq!(quote_fish(r"a\b'c"), r"'a\\b\'c'");
    }

    #[test]
    fn newline_in_path_is_refused() {
        assert!(env_script(Shell::Sh, Path::new("/tmp/a\nb"), Some(1)).is_err());
    }

    #[test]
    fn an_agent_on_another_machine_gets_no_pid() {
        // Reached through SSH forwarding: its pid means nothing here.
        for shell in [Shell::Sh, Shell::Csh, Shell::Fish] {
            let s = env_script(shell, Path::new("/r/a.sock"), None).unwrap();
            assert!(
                s.contains("JWTAGENT_SOCK") && !s.contains("JWTAGENT_PID"),
                "{s}"
            );
        }
        let s = env_script(Shell::Fish, Path::new("/r/a.sock"), None).unwrap();
        assert_eq!(s, "set -gx JWTAGENT_SOCK '/r/a.sock';\n");
    }
}
