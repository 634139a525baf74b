//! Black-box tests of the gateway: raw gRPC-Web over HTTP/1.1, framed by hand
//! as a browser sends it, through a real gateway in front of the real
//! activity and admin services (PostgreSQL and Redis as in their own tests);
//! and, in `deployed`, the same calls against a stack running in containers.

use presence_testkit::stack;

mod client_address;
mod connections;
mod deployed;
mod edge;
mod forwarding;
mod helpers;
mod operations;
mod startup;
