//! Black-box tests of the admin service. Each starts the real activity and
//! admin services on free ports against the machine's PostgreSQL (a fresh
//! database per test) and Redis (a fresh key prefix per test), drives users
//! through the activity service or places facts in the stores directly, and
//! reads statuses through the generated admin client.

mod access;
mod away;
mod browsers;
mod cluster;
mod counts;
mod faults;
mod helpers;
mod history;
mod pagination;
mod presence;
mod search;
mod settings;
mod shutdown;
mod startup;
mod statuses;
mod stuck_stores;
mod tokens;
mod watch;
