//! The stores the presence services share: the PostgreSQL pool and its
//! migrations, the Redis connection and key schema, token revocation and the
//! live activity settings, with the flags that configure them. The gateway
//! uses none of it, so it never links sqlx or redis.

pub mod cli;
pub mod config;
pub mod db;
mod error;
pub mod keys;
pub mod login_history;
pub mod redis_client;
pub mod revocation;
pub mod settings;

pub use error::Error;
