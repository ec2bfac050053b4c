//! The integration tests: one binary (one link, one process tree), one
//! module per area. `support` starts gateways in-process on temporary
//! sockets (`support::TestGateway::builder()`), `cli_support` runs the
//! `sgw` binary; golden legacy transcripts live in `tests/golden/`.
//!
//! Tests that need other uids re-run this binary as uid 65534
//! (`security::other_uid_client`); tests that need third-party clients find
//! them where `scripts/install-test-tools` put them.

mod cli_support;
mod support;

// The Rust example, compiled in so that its `run` is exercised (a test
// cannot run `cargo run --example` while cargo holds the build lock).
#[allow(dead_code)]
#[path = "../../examples/rust_client.rs"]
mod rust_client;

mod cli;
mod cli_follow;
mod containment;
mod crash;
mod durable;
mod engine;
mod errors;
mod grpc;
mod hostile;
mod journal;
mod legacy;
mod lifecycle;
mod logs;
mod metrics;
mod polyglot;
mod polyglot_clients;
mod properties;
mod readiness;
mod reload;
mod security;
mod serve;
mod top;
