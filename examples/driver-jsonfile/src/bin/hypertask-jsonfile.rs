//! `hypertask` with the jsonfile driver registered next to the built-in ones.

fn main() -> std::process::ExitCode {
    let mut registry = hypertask_cli::builtin_registry();
    hypertask_driver_jsonfile::register(&mut registry);
    hypertask_cli::run(registry)
}
