//! SHA-256 content hashes and the canonical checkpoint digest.
//!
//! A checkpoint's hash is sha256 over its tensors sorted by name, each contributing its name,
//! dtype, shape and little-endian contiguous bytes, every field length-prefixed. File bytes,
//! safetensors header order and `HashMap` order never enter it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// A sha256 digest, shown and serialised as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    /// The full 64-digit hex form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first `n` hex digits, for folder names and tables.
    pub fn short(&self, n: usize) -> String {
        let mut s = self.to_hex();
        s.truncate(n);
        s
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({})", self.to_hex())
    }
}

impl FromStr for ContentHash {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::BadHash { text: s.to_string() };
        if s.len() != 64 {
            return Err(bad());
        }
        let bytes = hex::decode(s).map_err(|_| bad())?;
        let mut out = [0u8; 32];
        out.copy_from_slice(&bytes);
        Ok(ContentHash(out))
    }
}

impl Serialize for ContentHash {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for ContentHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A domain-separated, length-prefixed sha256 stream: no two different sequences of fields
/// feed the same bytes to the hash.
pub struct Hasher(Sha256);

impl Hasher {
    /// Starts a hash for one kind of object; `domain` keeps kinds apart.
    pub fn new(domain: &str) -> Self {
        let mut h = Hasher(Sha256::new());
        h.bytes(domain.as_bytes());
        h
    }

    /// Adds an unsigned integer (8 bytes, little-endian).
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.update(v.to_le_bytes());
        self
    }

    /// Adds a byte string, prefixed with its length.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.u64(b.len() as u64);
        self.0.update(b);
        self
    }

    /// Adds a UTF-8 string, prefixed with its length.
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }

    /// The digest of everything added.
    pub fn finish(self) -> ContentHash {
        ContentHash(self.0.finalize().into())
    }
}

/// One tensor of a checkpoint, as the digest sees it.
#[derive(Debug, Clone, Copy)]
pub struct TensorEntry<'a> {
    /// The tensor's name (a PyTorch `state_dict` key).
    pub name: &'a str,
    /// The dtype as safetensors spells it: `F32`, `I64`, `F16`, …
    pub dtype: &'a str,
    /// The shape.
    pub shape: &'a [usize],
    /// Contiguous little-endian element bytes.
    pub data: &'a [u8],
}

/// The canonical checkpoint hash: sha256 over the tensors sorted by name.
///
/// # Errors
/// Two tensors with the same name are an error: the digest would be ambiguous.
pub fn checkpoint_digest<'a>(entries: impl IntoIterator<Item = TensorEntry<'a>>) -> Result<ContentHash> {
    let mut entries: Vec<TensorEntry<'a>> = entries.into_iter().collect();
    entries.sort_by(|a, b| a.name.cmp(b.name));
    if let Some(w) = entries.windows(2).find(|w| w[0].name == w[1].name) {
        return Err(Error::DuplicateTensor(w[0].name.to_string()));
    }
    let mut h = Hasher::new("infoat-checkpoint-v1");
    h.u64(entries.len() as u64);
    for e in &entries {
        h.str(e.name).str(e.dtype).u64(e.shape.len() as u64);
        for &d in e.shape {
            h.u64(d as u64);
        }
        h.bytes(e.data);
    }
    Ok(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries() -> Vec<(String, Vec<usize>, Vec<u8>)> {
        vec![
            (
                "linear.weight".into(),
                vec![2, 2],
                [1.0f32, -2.0, 0.5, 3.25].iter().flat_map(|v| v.to_le_bytes()).collect(),
            ),
            ("bn.num_batches_tracked".into(), vec![], 7i64.to_le_bytes().to_vec()),
        ]
    }

    fn digest_of(v: &[(String, Vec<usize>, Vec<u8>)]) -> ContentHash {
        checkpoint_digest(v.iter().map(|(n, s, d)| TensorEntry {
            name: n,
            dtype: if d.len() == 8 && s.is_empty() { "I64" } else { "F32" },
            shape: s,
            data: d,
        }))
        .unwrap()
    }

    /// Pins the byte layout of the digest: a change here silently re-keys every checkpoint.
    #[test]
    fn golden_checkpoint_digest() {
        assert_eq!(
            digest_of(&entries()).to_hex(),
            include_str!("../../fixtures/golden/checkpoint_digest_registry.txt").trim()
        );
    }

    #[test]
    fn order_does_not_matter_content_does() {
        let mut e = entries();
        let a = digest_of(&e);
        e.reverse();
        assert_eq!(a, digest_of(&e));
        e[0].2[0] ^= 1;
        assert_ne!(a, digest_of(&e));
        let mut e = entries();
        e[0].1 = vec![4, 1];
        assert_ne!(a, digest_of(&e), "shape must count");
        let mut e = entries();
        e[0].0 = "linear.weigh".into();
        assert_ne!(a, digest_of(&e), "name must count");
    }

    #[test]
    fn duplicate_names_rejected() {
        let mut e = entries();
        e.push(e[0].clone());
        let r = checkpoint_digest(e.iter().map(|(n, s, d)| TensorEntry { name: n, dtype: "F32", shape: s, data: d }));
        assert!(matches!(r, Err(Error::DuplicateTensor(n)) if n == "linear.weight"));
    }

    #[test]
    fn hex_roundtrip_and_errors() {
        let h = digest_of(&entries());
        assert_eq!(h.to_hex().parse::<ContentHash>().unwrap(), h);
        assert_eq!(h.short(12).len(), 12);
        assert!("abc".parse::<ContentHash>().is_err());
        assert!("z".repeat(64).parse::<ContentHash>().is_err());
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json, format!("\"{}\"", h.to_hex()));
        assert_eq!(serde_json::from_str::<ContentHash>(&json).unwrap(), h);
    }
}
