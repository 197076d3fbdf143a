//! `jwtagent-agent`: the daemon's binary, which `jwtagent agent` runs (it
//! must be installed beside `jwtagent`). It takes the same command line as
//! `jwtagent`, links the agent itself, and is a position-independent
//! executable: the process that holds secrets and parses what servers send
//! keeps full address-space randomization.

fn main() -> std::process::ExitCode {
    jwtagent_cli::daemon_main()
}
