//! Shell completions: clap's scripts, plus profile names where a command
//! takes one (read from the profiles file by `jwtagent complete-profiles`,
//! which is fast, needs no agent, and prints nothing when there is no file).

use crate::args::Cli;
use clap::CommandFactory;

/// The commands whose first argument is an existing profile's name (`add`
/// and `keygen` name a new one).
const TAKE_A_PROFILE: &[&str] = &[
    "show",
    "remove",
    "rm",
    "token",
    "login",
    "logout",
    "header",
    "dpop",
    "jwks",
    "exec",
    "kubectl",
    "git-credential",
];

/// Options of those commands that take a value (so the word after them is
/// not the profile name).
const WITH_VALUE: &[&str] = &[
    "--socket",
    "--timeout",
    "--log-format",
    "--min-ttl",
    "--scope",
    "--resource",
    "--url",
    "--method",
    "--nonce",
    "--env",
    "--username",
];

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
    clap_complete::generate(shell, &mut Cli::command(), "jwtagent", &mut buf);
    let clap = String::from_utf8_lossy(&buf).into_owned();
    let commands = TAKE_A_PROFILE.join(" ");
    let with_value = WITH_VALUE.join(" ");
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
