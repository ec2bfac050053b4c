//! Transports: how the control port is reached from outside the process.
//! `socket` binds, `listener` accepts and identifies peers, `admission`
//! decides who gets a connection slot, `h2_authority`
//! repairs what some clients send, `grpc` and `legacy` serve.

pub mod admission;
pub mod grpc;
pub mod h2_authority;
pub mod legacy;
pub mod listener;
pub mod peer;
pub mod socket;
