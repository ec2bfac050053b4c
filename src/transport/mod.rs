//! Transports: how the control port is reached from outside the process.

pub mod socket;
