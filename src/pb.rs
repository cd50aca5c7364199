//! Code generated from `proto/` and the encoded descriptor set served by reflection.

#![allow(clippy::all, missing_docs)]

pub mod v1 {
    tonic::include_proto!("verif8.v1");
}

/// Encoded `FileDescriptorSet` of every file in `proto/` (and its imports).
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("verif8_descriptor");
