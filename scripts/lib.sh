# Shared by the scripts: install Debian packages for commands that are missing.
# Usage: ensure CMD PACKAGE [CMD PACKAGE ...]

ensure() {
    missing=''
    while [ $# -ge 2 ]; do
        command -v "$1" >/dev/null 2>&1 || missing="$missing $2"
        shift 2
    done
    [ -n "$missing" ] || return 0
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "missing:$missing; install them (no apt-get here)" >&2
        return 1
    fi
    if [ "$(id -u)" -eq 0 ]; then
        sudo=''
    elif command -v sudo >/dev/null 2>&1; then
        sudo='sudo'
    else
        echo "missing:$missing; as root run: apt-get install -y$missing" >&2
        return 1
    fi
    echo "installing$missing" >&2
    $sudo apt-get update -qq
    # shellcheck disable=SC2086 # the package list is split on purpose
    # Only what the tests need: no recommended packages (lynx, mailcap, ...).
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing
}
