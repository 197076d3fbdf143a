//! `jwtagent`: the CLI (see the library for what runs). Linked without a
//! position-independent image (cli/build.rs), so that a short-lived process
//! starts fast.

fn main() -> std::process::ExitCode {
    jwtagent_cli::main()
}
