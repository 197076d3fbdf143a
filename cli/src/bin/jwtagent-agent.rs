//! `jwtagent-agent`: the daemon's binary, which `jwtagent agent` replaces
//! itself with when it is installed beside `jwtagent`. The same program as
//! `jwtagent`, linked as a position-independent executable: the process that
//! holds secrets and parses what servers send keeps full address-space
//! randomization.

fn main() -> std::process::ExitCode {
    jwtagent_cli::main()
}
