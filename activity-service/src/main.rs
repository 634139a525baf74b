//! The activity service binary: parse the command line, then serve or run a
//! maintenance command.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    activity_service::cli::Cli::parse().run().await
}
