//! Shell completions: clap's scripts, plus profile names where a command
//! takes one (read from the profiles file by `jwtagent complete-profiles`,
//! which is fast, needs no agent, and prints nothing when there is no file).

use crate::args::Cli;
use clap::CommandFactory;

/// Commands whose first positional argument names a profile that does not
/// exist yet.
const NEW_PROFILE: &[&str] = &["add", "keygen"];

/// The commands (and their aliases) whose first positional argument is an
/// existing profile's name, read from the grammar clap has: its id is
/// `name`.
fn take_a_profile(cli: &clap::Command) -> Vec<String> {
    cli.get_subcommands()
        .filter(|c| !NEW_PROFILE.contains(&c.get_name()))
        .filter(|c| {
            c.get_positionals()
                .next()
                .is_some_and(|a| a.get_id() == "name")
        })
        .flat_map(|c| {
            std::iter::once(c.get_name().to_string()).chain(c.get_all_aliases().map(str::to_string))
        })
        .collect()
}

/// The options (global, and of the commands that take a profile) that take
/// a value, so that the word after them is not the profile's name.
fn with_value(cli: &clap::Command) -> Vec<String> {
    let takes = take_a_profile(cli);
    let commands = std::iter::once(cli).chain(
        cli.get_subcommands()
            .filter(|c| takes.iter().any(|t| t == c.get_name())),
    );
    let mut options: Vec<String> = commands
        .flat_map(|c| c.get_arguments())
        .filter(|a| !a.is_positional() && a.get_action().takes_values())
        .flat_map(|a| {
            let long = a.get_long().map(|l| format!("--{l}"));
            let short = a.get_short().map(|s| format!("-{s}"));
            long.into_iter().chain(short)
        })
        .collect();
    options.sort();
    options.dedup();
    options
}

/// The profile names in the profiles file, one a line; nothing when it
/// cannot be read.
pub fn profiles() -> String {
    let Some(path) = jwtagent::config::config_path() else {
        return String::new();
    };
    match jwtagent::config::ConfigFile::load(&path) {
        Ok(config) => config
            .profiles
            .keys()
            .map(|name| format!("{name}\n"))
            .collect(),
        Err(_) => String::new(),
    }
}

/// The completion script for `shell`.
pub fn script(shell: clap_complete::Shell) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut cli = Cli::command();
    clap_complete::generate(shell, &mut cli, "jwtagent", &mut buf);
    let clap = String::from_utf8_lossy(&buf).into_owned();
    let commands = take_a_profile(&cli).join(" ");
    let with_value = with_value(&cli).join(" ");
    match shell {
        clap_complete::Shell::Bash => format!(
            r#"{clap}
# Profile names for the commands that take one.
_jwtagent_profiles() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" i=1 sub="" arg=0 skip=0
    while [ "$i" -lt "$COMP_CWORD" ]; do
        local w="${{COMP_WORDS[$i]}}"
        if [ "$skip" = 1 ]; then skip=0
        elif [ -z "$sub" ]; then
            case " {with_value} " in *" $w "*) skip=1 ;; *) case "$w" in -*) ;; *) sub="$w" ;; esac ;; esac
        else
            case " {with_value} " in *" $w "*) skip=1 ;; *) case "$w" in -*) ;; *) arg=$((arg + 1)) ;; esac ;; esac
        fi
        i=$((i + 1))
    done
    case " {commands} " in
        *" $sub "*)
            if [ "$skip" = 0 ] && [ "$arg" = 0 ] && [ "${{cur#-}}" = "$cur" ]; then
                COMPREPLY=($(compgen -W "$(jwtagent complete-profiles 2>/dev/null)" -- "$cur"))
                return 0
            fi ;;
    esac
    _jwtagent "$@"
}}
complete -F _jwtagent_profiles -o nosort -o bashdefault -o default jwtagent
"#
        )
        .into_bytes(),
        clap_complete::Shell::Zsh => {
            // The NAME of those commands completes with profile names.
            let mut out = String::new();
            for line in clap.lines() {
                let profile_arg = line.starts_with("':name -- ")
                    && line.ends_with(":_default' \\")
                    && !line.contains("letters, digits");
                if profile_arg {
                    out.push_str(&line.replace(":_default' \\", ":_jwtagent_profiles' \\"));
                } else {
                    out.push_str(line);
                }
                out.push('\n');
            }
            let profiles = r#"
(( $+functions[_jwtagent_profiles] )) ||
_jwtagent_profiles() {
    local -a names
    names=(${(f)"$(jwtagent complete-profiles 2>/dev/null)"})
    _describe -t profiles 'profile' names
}
"#;
            // Defined before the script's last line (`_jwtagent "$@"` or the
            // compdef), so that it exists when completion first runs.
            match out.rfind("\nif [ \"$funcstack[1]\" = \"_jwtagent\" ]") {
                Some(at) => out.insert_str(at, profiles),
                None => out.push_str(profiles),
            }
            out.into_bytes()
        }
        clap_complete::Shell::Fish => format!(
            r#"{clap}
# Profile names for the commands that take one.
function __jwtagent_wants_profile
    set -l skip 0
    set -l sub ""
    set -l args 0
    for t in (commandline -opc)[2..-1]
        if test $skip = 1
            set skip 0
        else if contains -- $t {with_value}
            set skip 1
        else if string match -q -- '-*' $t
        else if test -z "$sub"
            set sub $t
        else
            set args (math $args + 1)
        end
    end
    test $skip = 0; and test $args = 0; and contains -- "$sub" {commands}
end
complete -c jwtagent -n __jwtagent_wants_profile -f -a "(jwtagent complete-profiles 2>/dev/null)" -d profile
"#
        )
        .into_bytes(),
        _ => clap.into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether clap, given `line`, takes `word` for the profile name of
    /// the command.
    fn clap_takes_as_name(line: &[&str], word: &str) -> bool {
        let Ok(matches) = Cli::command().try_get_matches_from(line) else {
            return false;
        };
        let Some((_, sub)) = matches.subcommand() else {
            return false;
        };
        sub.try_get_one::<String>("name")
            .ok()
            .flatten()
            .is_some_and(|name| name == word)
    }

    #[test]
    fn the_completions_know_the_profile_position_as_clap_parses_it() {
        let cli = Cli::command();
        let takes = take_a_profile(&cli);
        for known in [
            "token",
            "header",
            "show",
            "remove",
            "git-credential",
            "login",
        ] {
            assert!(
                takes.iter().any(|t| t == known),
                "{known} missing from {takes:?}"
            );
        }
        assert!(!takes.iter().any(|t| NEW_PROFILE.contains(&t.as_str())));
        let options = with_value(&cli);
        // For every such command, an option with a value before the profile
        // name: clap takes the word after the value as the name, and the
        // completion's lists skip the value the same way.
        for command in &takes {
            let sub = cli.find_subcommand(command).unwrap();
            let valued = sub.get_arguments().chain(cli.get_arguments()).find(|a| {
                !a.is_positional() && a.get_action().takes_values() && a.get_long().is_some()
            });
            let mut line: Vec<String> = vec!["jwtagent".into(), command.clone()];
            if let Some(arg) = valued {
                let long = format!("--{}", arg.get_long().unwrap());
                assert!(
                    options.contains(&long),
                    "{long} of {command} is not in {options:?}"
                );
                let value = arg
                    .get_possible_values()
                    .first()
                    .map_or_else(|| "1".to_string(), |v| v.get_name().to_string());
                line.extend([long, value]);
            }
            line.push("some-profile".into());
            match command.as_str() {
                "git-credential" => line.push("get".into()),
                "exec" => line.extend(["--".into(), "true".into()]),
                _ => {}
            }
            let line: Vec<&str> = line.iter().map(String::as_str).collect();
            assert!(
                clap_takes_as_name(&line, "some-profile"),
                "clap does not take the word after {line:?} as the profile of {command}"
            );
        }
    }

    #[test]
    fn every_shell_is_offered_every_value_of_the_options_with_a_list() {
        use jwtagent::config::{Alg, AuthMethod, GrantKind, StoreKind};
        let words: Vec<&str> = AuthMethod::ALL
            .map(AuthMethod::as_str)
            .into_iter()
            .chain(GrantKind::ALL.map(GrantKind::as_str))
            .chain(StoreKind::ALL.map(StoreKind::as_str))
            .chain(Alg::ALL.map(Alg::as_str))
            .collect();
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let text = String::from_utf8(script(shell)).unwrap();
            for word in &words {
                assert!(text.contains(word), "{shell}: {word} is not offered");
            }
        }
    }
}
