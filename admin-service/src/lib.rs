//! The admin service: who is online (`ListUserStatuses`,
//! `BatchGetUserStatuses`), the live stream of changes
//! (`WatchUserStatuses`), and the threshold setting.
//!
//! - `config`, `cli`, `startup`: settings, commands, and the server built from them.
//! - `grpc`: the handlers (authorisation, parsing, answers).
//! - `status`: the status rule, one pure function.
//! - `listing`: statuses for pages and batches, degraded when Redis is down.
//! - `presence`: one user's status with its evidence and last login events.
//! - `store`: PostgreSQL (`Directory`) and Redis (`ActivityReader`) access.
//! - `watch`: the per-process hub that follows changes for every watcher.
//! - `index_keeper`: keeps the presence index in step with login_history.
//! - `background`: deadlines and retry delays of those background loops.
//! - `connections`: connections that can be cut when the drain deadline passes.
//! - `online_history`: the online count sampled once a minute, and read back in buckets.
//! - `search`: the query of a listing (parsed and bounded; matched by `store`).
//! - `page_token`: signed pagination positions.
//! - `error`: the one error type and its mapping to gRPC status.

pub mod background;
pub mod cli;
pub mod config;
pub mod connections;
pub mod error;
pub mod grpc;
pub mod index_keeper;
pub mod listing;
pub mod online_history;
pub mod page_token;
pub mod presence;
pub mod search;
pub mod startup;
pub mod status;
pub mod store;
pub mod watch;
