//! The `oqs.fleet.v1` protocol between `oqs-agent` and `oqs-collector`: the generated message and
//! service types, the descriptor set for gRPC reflection, and the identity rules both sides enforce.
//!
//! This crate is the only place the protocol lives. It must never hold behaviour beyond parsing
//! identities: no I/O, no storage, no checks.

pub mod codec;
pub mod ident;

/// Generated from `proto/oqs/fleet/v1/fleet.proto`; never hand-edited.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("oqs.fleet.v1");
}

/// The protocol generation this crate speaks (`Hello.protocol_version`).
pub const PROTOCOL_VERSION: u32 = 1;

/// The encoded `FileDescriptorSet` of `fleet.proto`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/fleet_descriptor.bin"));
