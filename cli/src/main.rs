//! The `hypertask` binary: the command line with the built-in driver kinds.

fn main() -> std::process::ExitCode {
    hypertask_cli::run(hypertask_cli::builtin_registry())
}
