//! The `hypertask` binary: the command line with the built-in driver kinds.

/// A sync handles tens of thousands of small JSON documents, each parsed, normalised, hashed
/// and written: with glibc's allocator, allocation and freeing were over a third of a large
/// sync's CPU (BENCHMARKS.md). mimalloc builds from source with the C compiler alone.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    hypertask_cli::run(hypertask_cli::builtin_registry())
}
