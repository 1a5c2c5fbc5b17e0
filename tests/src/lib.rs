//! Helpers shared by Eddy's integration tests.

use std::collections::BTreeMap;

use eddy_engine::ChangelogRecord;

/// The state a changelog describes: the last value of each key, deletes applied.
pub fn replay(changelog: &[ChangelogRecord]) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut state = BTreeMap::new();
    for rec in changelog {
        match &rec.value {
            Some(v) => state.insert(rec.key.clone(), v.clone()),
            None => state.remove(&rec.key),
        };
    }
    state
}
