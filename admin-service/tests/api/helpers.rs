//! The stack these tests run against comes from the test kit (the gateway's
//! tests use the same one).

pub use presence_testkit::stack::*;
