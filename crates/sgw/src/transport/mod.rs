//! Transports: how the control port is reached from outside the process.
//! `socket` binds, `listener` accepts and identifies peers, `admission`
//! decides who gets a connection slot (the `h2-authority` crate
//! repairs what some HTTP/2 clients send), `grpc` and `legacy` serve.

pub mod admission;
pub mod grpc;
pub mod legacy;
pub mod listener;
pub mod peer;
pub mod socket;
