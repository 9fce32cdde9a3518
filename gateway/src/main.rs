//! The `cordon` binary.

use clap::Parser;
use cordon_gateway::cli::{Cli, Command, init_tracing, run};

/// mimalloc rather than glibc's malloc: screening and release allocate small objects on many
/// threads at once, where glibc's arenas spent a fifth of the gateway's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Client commands print JSON on stdout; keep their stderr quiet unless asked.
    let quiet = !matches!(cli.command, Command::Serve { .. });
    if !quiet || std::env::var_os("RUST_LOG").is_some() {
        init_tracing(cli.log_format);
    }
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
