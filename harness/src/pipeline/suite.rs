//! The attack suite as hashed into an evaluation's key, and the attack versions it records.

use std::collections::BTreeMap;

use crate::attacks::AttackId;

/// The attack suite as hashed into an evaluation's key.
pub(super) fn suite_description(
    attacks: &[AttackId],
    eps: f64,
    batch_size: usize,
    sanity: bool,
    rays_budget: usize,
) -> serde_json::Value {
    let mut suite = serde_json::json!({
        "attacks": attacks.iter().map(|a| a.name()).collect::<Vec<_>>(),
        "eps": eps,
        "batch_size": batch_size,
        "sanity": sanity,
        "norm": "linf",
    });
    if attacks.contains(&AttackId::Rays) {
        // Only suites with RayS carry its budget, so existing suite hashes stay put.
        suite["rays_budget"] = serde_json::json!(rays_budget);
    }
    // The implementation versions of the attacks past their first, so a suite of attacks that
    // never changed keeps its hash, and one with a changed attack gets a new one.
    let versions: BTreeMap<&str, u32> =
        attacks.iter().filter(|a| a.version() > 1).map(|a| (a.name(), a.version())).collect();
    if !versions.is_empty() {
        suite["versions"] = serde_json::json!(versions);
    }
    suite
}

/// The version of `attack` an evaluation suite (as recorded) was computed with: 1 where the
/// suite names none (suites from before versions were recorded).
pub fn recorded_version(suite: &serde_json::Value, attack: AttackId) -> u32 {
    suite.pointer(&format!("/versions/{}", attack.name())).and_then(|v| v.as_u64()).map_or(1, |v| v as u32)
}

/// The attacks of a recorded suite whose implementation has changed since: `(attack, recorded
/// version)` for each with an older version than the current one (attack ids this binary does
/// not know are skipped).
pub fn outdated_attacks(suite: &serde_json::Value) -> Vec<(AttackId, u32)> {
    let names = suite.get("attacks").and_then(|a| a.as_array()).cloned().unwrap_or_default();
    names
        .into_iter()
        .filter_map(|n| serde_json::from_value::<AttackId>(n).ok())
        .filter_map(|a| {
            let v = recorded_version(suite, a);
            (v < a.version()).then_some((a, v))
        })
        .collect()
}
