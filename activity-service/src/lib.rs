//! The activity service: signs users in (`Login`), records that they are here
//! (`Ping`, `RecordActivity`), signs them out (`Logout`) and shows each user
//! what it records about them (`GetMyPresence`).
//!
//! - `config`: every setting, from the environment.
//! - `cli`: the `serve`, `migrate`, `user` and `token` commands.
//! - `startup`: builds the gRPC server from the configuration.
//! - `grpc`: the handlers; each parses its request into domain values first.
//! - `browser`: the browser id pings and logouts carry.
//! - `store`: Redis (activity keys, revocations) and PostgreSQL (accounts, login_history).
//! - `password`: argon2id hashing, off the async threads, a bounded number at once.
//! - `throttle`: the sign-in throttle (per address, per username and address,
//!   and a per-username backoff that never holds the owner back).
//! - `retention`: the background purge of old login_history rows.
//! - `revocations`: keeps Redis's copy of revoked tokens and disabled users
//!   in step with PostgreSQL.
//! - `error`: the one error type and its mapping to gRPC status.

pub mod browser;
pub mod cli;
pub mod config;
pub mod error;
pub mod grpc;
pub mod password;
pub mod retention;
pub mod revocations;
pub mod startup;
pub mod store;
pub mod throttle;
