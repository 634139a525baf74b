//! The gateway: the browser's door to presence. It translates gRPC-Web
//! (binary and text, over HTTP/1.1 or HTTP/2) to native gRPC towards the
//! activity and admin services, applies the edge rules, and serves the web
//! app from the same origin.
//!
//! - `config`: every setting, from the environment.
//! - `startup`: the service stack, health and the drain.
//! - `server`: the listeners: connection limit, header and idle deadlines.
//! - `service`: what each request meets first: the fast path or the router.
//! - `fast_path`: binary unary gRPC-Web from its own origin (every ping).
//! - `contract`: the methods the gateway knows, from the contract's descriptors.
//! - `grpc_timeout`: the `grpc-timeout` header, read strictly and capped.
//! - `edge`: origin and size checks before translation.
//! - `admission`: the edge rules of every call: allowlist, rate limits, deadline.
//! - `routing`: which service a call goes to, by its service name.
//! - `forward`: the slow path's tower service, and forwarding within the deadline.
//! - `deadline`: a response stream ended at its deadline or the drain's end.
//! - `upstream`: the HTTP/2 client to the services, balancing over every address of their names.
//! - `rate_limit`: allowances per user and per address (governor), and verified tokens.
//! - `metrics`: Prometheus metrics and access logs, recorded when a call ends.
//! - `static_files`: the web app with SPA fallback, compression and caching.
//! - `error`: the gateway's errors and the gRPC status each becomes.

pub mod admission;
pub mod config;
pub mod contract;
pub mod deadline;
pub mod edge;
pub mod error;
pub mod fast_path;
pub mod forward;
pub mod grpc_timeout;
pub mod metrics;
pub mod rate_limit;
pub mod routing;
pub mod server;
pub mod service;
pub mod startup;
pub mod static_files;
pub mod upstream;
