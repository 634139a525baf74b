//! The admin service binary: parse the command line, then serve or migrate.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    admin_service::cli::Cli::parse().run().await
}
