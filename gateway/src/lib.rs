//! The gateway: the browser's door to presence. It translates gRPC-Web
//! (binary and text, over HTTP/1.1 or HTTP/2) to native gRPC towards the
//! activity and admin services, applies the edge rules, and serves the web
//! app from the same origin.
//!
//! - `config`: every setting, from the environment.
//! - `startup`: the service stack, health and the drain.
//! - `server`: the listeners: connection limit, header and idle deadlines.
//! - `entrance`: what each request meets first: the direct way or the router.
//! - `grpc_web`: the direct way for binary unary gRPC-Web (every ping).
//! - `contract`: the methods the gateway knows, from the contract's descriptors.
//! - `grpc_timeout`: the `grpc-timeout` header, read strictly and capped.
//! - `edge`: origin and size checks before translation.
//! - `forward`: the generic forwarding path, allowlist, rate limits, deadlines.
//! - `upstream`: the HTTP/2 client to the services.
//! - `rate_limit`: token buckets per user and per address.
//! - `metrics`: Prometheus metrics and access logs, recorded when a call ends.
//! - `static_files`: the web app with SPA fallback, compression and caching.
//! - `error`: the gateway's errors and the gRPC status each becomes.

pub mod config;
pub mod contract;
pub mod edge;
pub mod entrance;
pub mod error;
pub mod forward;
pub mod grpc_timeout;
pub mod grpc_web;
pub mod metrics;
pub mod rate_limit;
pub mod server;
pub mod startup;
pub mod static_files;
pub mod upstream;
