//! The command line: `serve` (the default), `migrate`, `user upsert` and
//! `token issue`. Passwords are read from standard input, never from
//! arguments, where `ps` and shell history would show them.

use std::io::BufRead;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use presence_core::cli::exit_code;
use presence_core::config::{CommonArgs, JwtArgs};
use presence_core::telemetry;
use presence_core::token::Role;
use presence_store::cli::MigrateArgs;
use presence_store::config::DatabaseArgs;
use presence_store::db;

use crate::config::ActivityConfig;
use crate::startup::{Application, StartupError};
use crate::store::Accounts;
use presence_core::cli::Report;

/// With no command, serves gRPC with the settings below.
#[derive(Parser, Debug)]
#[command(
    name = "activity-service",
    version,
    about = "presence activity service: Login, Ping, Logout over gRPC",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ActivityConfig,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create the database if needed and apply pending migrations (safe to run twice).
    Migrate(MigrateArgs),
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage tokens.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Subcommand, Debug)]
enum UserCommand {
    /// Create a user, or update an existing one's password, role and name.
    /// The password is the first line of standard input.
    Upsert {
        #[arg(long)]
        username: String,
        #[arg(long, value_parser = ["user", "admin", "service"], default_value = "user")]
        role: String,
        /// Name shown to admins (defaults to the username).
        #[arg(long)]
        display_name: Option<String>,
        /// Refuse this account's sign-ins and end its tokens (every service
        /// refuses them within seconds; they stay refused if the account is
        /// enabled again, when it signs in afresh).
        #[arg(long, default_value_t = false)]
        disabled: bool,
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

#[derive(Subcommand, Debug)]
enum TokenCommand {
    /// Print a token for a `service` account, for back-end callers of
    /// RecordActivity and BatchGetUserStatuses (signed with the current key;
    /// its lifetime may not exceed PRESENCE_JWT_MAX_SERVICE_LIFETIME_SECONDS).
    Issue {
        #[arg(long)]
        username: String,
        /// Lifetime in days.
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(i64).range(1..=366))]
        days: i64,
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        jwt: JwtArgs,
    },
}

impl Cli {
    pub async fn run(self) -> ExitCode {
        let outcome = match self.command {
            Some(command) => command.run().await,
            None => serve(self.serve).await,
        };
        exit_code("activity-service", outcome.map_err(Report))
    }
}

async fn serve(config: ActivityConfig) -> Result<(), StartupError> {
    telemetry::init(config.common.log_format);
    tracing::info!(config = ?config, "starting activity-service");
    let application = Application::build(config).await?;
    application
        .run_until(presence_core::shutdown::signal())
        .await
}

impl Command {
    async fn run(self) -> Result<(), StartupError> {
        match self {
            Command::Migrate(migrate) => migrate.run().await.map_err(StartupError::Migrations),
            Command::User(UserCommand::Upsert {
                username,
                role,
                display_name,
                disabled,
                common,
                database,
            }) => {
                telemetry::init(common.log_format);
                let password = read_password()?;
                let role: Role = role.parse().map_err(StartupError::Config)?;
                let accounts =
                    Accounts::new(db::connect_lazy(&database).map_err(StartupError::Store)?);
                let display_name = display_name.unwrap_or_else(|| username.clone());
                let id = accounts
                    .upsert_user(&username, &password, role, &display_name, disabled)
                    .await
                    .map_err(StartupError::Command)?;
                println!("{id}");
                Ok(())
            }
            Command::Token(TokenCommand::Issue {
                username,
                days,
                common,
                database,
                jwt,
            }) => {
                telemetry::init(common.log_format);
                let accounts =
                    Accounts::new(db::connect_lazy(&database).map_err(StartupError::Store)?);
                let account = accounts
                    .find_by_username(&username)
                    .await
                    .map_err(StartupError::Command)?
                    .filter(|account| account.role == Role::Service && !account.disabled)
                    .ok_or(StartupError::NoServiceAccount(username))?;
                jwt.check_key_files(true)?;
                let issuer = jwt.issuer(common.environment, days * 24 * 3600)?;
                let issued =
                    issuer.issue(account.id, Role::Service, chrono::Utc::now().timestamp())?;
                println!("{}", issued.token);
                Ok(())
            }
        }
    }
}

fn read_password() -> Result<String, StartupError> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(StartupError::ReadPassword)?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    crate::grpc::check_password_shape(&password)?;
    Ok(password)
}
