//! Canonical JSON and config hashes.
//!
//! The canonical form of a value is its JSON with object keys sorted, no whitespace, and
//! floats in serde_json's shortest round-trip form. A config's hash is sha256 over that form:
//! two files that mean the same thing hash the same, any changed value changes the hash.

use serde::Serialize;
use serde_json::Value;

use crate::{ContentHash, Error, Hasher, Result};

/// Rebuilds `v` with every object's keys sorted, independent of serde_json's map feature flags.
fn sorted(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut pairs: Vec<(String, Value)> = map.into_iter().collect();
            pairs.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(pairs.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// The canonical JSON text of `value`.
///
/// # Errors
/// Values that JSON cannot represent (NaN, infinities) are rejected rather than written as null.
pub fn canonical_json<T: Serialize>(value: &T) -> Result<String> {
    let v = serde_json::to_value(value)?;
    check_finite(&v)?;
    Ok(serde_json::to_string(&sorted(v))?)
}

fn check_finite(v: &Value) -> Result<()> {
    match v {
        Value::Null => Err(Error::NotCanonical(
            "config contains a null (an unset optional or a NaN/infinite float); write every value out".into(),
        )),
        Value::Array(items) => items.iter().try_for_each(check_finite),
        Value::Object(map) => map.values().try_for_each(check_finite),
        _ => Ok(()),
    }
}

/// sha256 of the canonical JSON of `value`, domain-separated by `kind` (e.g. `"run-config"`).
pub fn config_hash<T: Serialize>(kind: &str, value: &T) -> Result<ContentHash> {
    let text = canonical_json(value)?;
    let mut h = Hasher::new("infoat-config-v1");
    h.str(kind).str(&text);
    Ok(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_and_whitespace_do_not_matter() {
        let a: Value = serde_json::from_str(r#"{"b": 1, "a": {"y": 2.5, "x": [1, 2]}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":{"x":[1,2],"y":2.5},"b":1}"#).unwrap();
        assert_eq!(canonical_json(&a).unwrap(), r#"{"a":{"x":[1,2],"y":2.5},"b":1}"#);
        assert_eq!(config_hash("t", &a).unwrap(), config_hash("t", &b).unwrap());
    }

    #[test]
    fn values_and_kind_change_the_hash() {
        let a = json!({"lr": 0.01, "epochs": 5});
        assert_ne!(config_hash("t", &a).unwrap(), config_hash("t", &json!({"lr": 0.011, "epochs": 5})).unwrap());
        assert_ne!(config_hash("t", &a).unwrap(), config_hash("u", &a).unwrap());
        // Array order is meaning (LR milestones), so it counts.
        assert_ne!(config_hash("t", &json!({"m": [1, 2]})).unwrap(), config_hash("t", &json!({"m": [2, 1]})).unwrap());
    }

    #[test]
    fn nulls_and_non_finite_floats_are_rejected() {
        assert!(canonical_json(&json!({"a": null})).is_err());
        assert!(canonical_json(&f64::NAN).is_err());
    }
}
