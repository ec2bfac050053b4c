//! `sgw`: a process supervisor whose control plane is a gRPC service on a
//! Unix domain socket.
//!
//! Data flows one way: a transport (gRPC, legacy) calls the
//! [`control::ControlPlane`] port through the [`security`] guard, the
//! [`engine`] carries the command out on its children, every fact lands in
//! the [`journal`], and subscribers read the journal. The [`gateway`] wires
//! the transports around one guarded control port and owns the drain.

pub mod cli;
pub mod client;
pub mod config;
pub mod control;
pub mod engine;
pub mod gateway;
pub mod journal;
pub mod metrics;
pub mod model;
/// The generated protobuf and gRPC code (the `sgw-api` crate).
pub use sgw_api as pb;
pub mod security;
pub mod transport;
