//! Content addressing for the InfoAT harness.
//!
//! This crate never links libtorch: it hashes *meaning*, not files. A config is hashed as its
//! canonical JSON ([`canonical`]), a checkpoint as its tensors sorted by name ([`digest`]), so
//! the same model or the same config always gets the same [`ContentHash`] whatever the file
//! layout, map order or TOML spelling that carried it.

pub mod canonical;
pub mod digest;
mod error;

pub use canonical::{canonical_json, config_hash};
pub use digest::{checkpoint_digest, ContentHash, Hasher, TensorEntry};
pub use error::{Error, Result};
