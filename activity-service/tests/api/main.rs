//! Black-box tests of the activity service: each starts the real service on a
//! free port against the machine's PostgreSQL (a fresh database per test) and
//! Redis (a fresh key prefix per test), and calls it with the generated client.

mod database;
mod faults;
mod forwarded;
mod helpers;
mod login;
mod login_load;
mod login_throttle;
mod logout;
mod my_presence;
mod ping;
mod record_activity;
mod retention;
mod startup;
mod tokens;
