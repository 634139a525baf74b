//! What every presence binary shares, the gateway included: token issuing and
//! verification, the activity threshold, configuration pieces, telemetry,
//! forwarded client addresses, serving helpers and graceful shutdown. Nothing
//! here touches PostgreSQL or Redis (that is `presence-store`), so the gateway
//! links neither.
//!
//! Each service keeps its own handlers, store and error type; anything they
//! need to agree on (a claim, a default) lives here so it can never be
//! spelled two ways.

pub mod auth;
pub mod cli;
pub mod config;
mod error;
pub mod events;
pub mod forwarded;
pub mod serving;
pub mod shutdown;
pub mod telemetry;
pub mod threshold;
pub mod token;

pub use error::Error;
