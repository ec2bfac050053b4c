//! Transports: how the control port is reached from outside the process.
//! `socket` binds, `listener` accepts and identifies peers, `h2_authority`
//! repairs what some clients send, `grpc` serves.

pub mod grpc;
pub mod h2_authority;
pub mod listener;
pub mod peer;
pub mod socket;
