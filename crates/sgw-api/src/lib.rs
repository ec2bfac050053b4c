//! The `supervisor.gateway.v1` API of sgw: the proto files (`proto/`), the
//! prost messages and tonic clients/servers generated from them by
//! `build.rs` (protox: no system `protoc`), and the descriptor set that
//! reflection serves. This is what the `sgw` CLI, Rust clients and third
//! parties depend on; conversions to the daemon's domain types live in the
//! daemon (`transport::grpc::conv`), never here.

#[allow(
    clippy::all,
    clippy::pedantic,
    missing_docs,
    missing_debug_implementations
)]
mod generated {
    tonic::include_proto!("supervisor.gateway.v1");
}

pub use generated::*;

/// The encoded `FileDescriptorSet` of every proto file (with comments), as
/// served by reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/sgw_descriptor.bin"));

/// The protocol version `GetInfo` reports.
pub const PROTOCOL_VERSION: &str = "supervisor.gateway.v1";

#[cfg(test)]
mod tests {
    use prost::Message;

    /// The embedded descriptor set decodes and carries the services and
    /// their comments (reflection shows them to users).
    #[test]
    fn descriptor_set_decodes_with_comments() {
        let set =
            prost_types::FileDescriptorSet::decode(super::FILE_DESCRIPTOR_SET).expect("decodes");
        let control = set
            .file
            .iter()
            .find(|f| f.name() == "supervisor/gateway/v1/control_service.proto")
            .expect("control service file");
        assert_eq!(control.service[0].name(), "ControlService");
        assert!(
            control
                .source_code_info
                .as_ref()
                .is_some_and(|i| !i.location.is_empty())
        );
        assert!(
            set.file
                .iter()
                .any(|f| f.name() == "google/protobuf/timestamp.proto")
        );
    }
}
