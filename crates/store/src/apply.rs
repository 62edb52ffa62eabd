//! What a transaction does, defined once for both backends: check every compare against the
//! current keyspace, then apply the ops under one new revision and describe the change as watch
//! events. Sharing this keeps the in-memory store a faithful stand-in for the durable one.

use crate::types::{Compare, Event, KeyValue, Op, Revision, StoreError, Txn};

/// The keyspace a transaction reads and writes: a `BTreeMap` in memory, a redb table on disk.
pub(crate) trait Keyspace {
    /// The create and mod revisions of `key`, if it is present.
    fn revisions(&mut self, key: &str) -> Result<Option<(Revision, Revision)>, StoreError>;
    fn put(&mut self, kv: &KeyValue) -> Result<(), StoreError>;
    /// Removes `key`, saying whether it was there.
    fn delete(&mut self, key: &str) -> Result<bool, StoreError>;
}

/// What applying one transaction did to the keyspace.
#[derive(Debug)]
pub(crate) enum Applied {
    /// The compares held and the ops were applied; these are the changes, in op order. A delete
    /// of an absent key changes nothing and yields no event, but the transaction still commits.
    Committed(Vec<Event>),
    /// This key's compare failed; nothing was written.
    Conflict(String),
}

/// Applies `txn` as revision `revision`. Compares are all checked before any op runs, so a
/// conflict leaves the keyspace untouched.
pub(crate) fn apply(txn: &Txn, revision: Revision, keyspace: &mut impl Keyspace) -> Result<Applied, StoreError> {
    // What the compares read, kept up to date as ops run: a put on a compared key (a create
    // guarded by "absent", an update guarded by "unchanged") needs its create revision, and
    // reading the keyspace again for it would cost a second lookup per key.
    let mut known: Vec<(&str, Option<(Revision, Revision)>)> = Vec::with_capacity(txn.compares.len());
    for compare in &txn.compares {
        let found = keyspace.revisions(compare.key())?;
        let holds = match compare {
            Compare::ModRevision { revision: expected, .. } => found.map_or(0, |(_, modified)| modified) == *expected,
            Compare::CreateRevision { revision: expected, .. } => found.map_or(0, |(created, _)| created) == *expected,
        };
        if !holds {
            return Ok(Applied::Conflict(compare.key().to_string()));
        }
        known.push((compare.key(), found));
    }
    let mut events = Vec::with_capacity(txn.ops.len());
    for op in &txn.ops {
        match op {
            Op::Put { key, value } => {
                let slot = known.iter().position(|(k, _)| *k == key.as_str());
                let existing = match slot {
                    Some(i) => known[i].1,
                    None => keyspace.revisions(key)?,
                };
                let create_revision = existing.map_or(revision, |(created, _)| created);
                let kv = KeyValue { key: key.clone(), value: value.clone(), create_revision, mod_revision: revision };
                keyspace.put(&kv)?;
                if let Some(i) = slot {
                    known[i].1 = Some((create_revision, revision));
                }
                events.push(Event::Put(kv));
            }
            Op::Delete { key } => {
                if let Some(i) = known.iter().position(|(k, _)| *k == key.as_str()) {
                    known[i].1 = None;
                }
                if keyspace.delete(key)? {
                    events.push(Event::Delete { key: key.clone() });
                }
            }
        }
    }
    Ok(Applied::Committed(events))
}

/// The events of a batch that fall under `prefix`, or `None` when there are none, so watchers
/// never see empty batches.
pub(crate) fn filter_events(events: &[Event], prefix: &str) -> Option<Vec<Event>> {
    let kept: Vec<Event> = events.iter().filter(|e| e.key().starts_with(prefix)).cloned().collect();
    (!kept.is_empty()).then_some(kept)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn compares_are_checked_before_any_op() {
        let mut kv = BTreeMap::new();
        let txn =
            Txn::new().when(Compare::absent("a")).then(Op::put("a", b"1".to_vec())).then(Op::put("b", b"1".to_vec()));
        assert!(matches!(apply(&txn, 1, &mut kv).unwrap(), Applied::Committed(e) if e.len() == 2));
        let conflicting = Txn::new().when(Compare::unchanged("b", 1)).when(Compare::absent("a")).then(Op::delete("b"));
        assert!(matches!(apply(&conflicting, 2, &mut kv).unwrap(), Applied::Conflict(k) if k == "a"));
        assert!(kv.contains_key("b"), "the conflicting txn wrote nothing");
    }

    #[test]
    fn ops_on_one_key_apply_in_order() {
        let mut kv = BTreeMap::new();
        let txn = Txn::new().then(Op::put("a", b"1".to_vec())).then(Op::delete("a")).then(Op::put("a", b"2".to_vec()));
        let Applied::Committed(events) = apply(&txn, 5, &mut kv).unwrap() else { panic!() };
        assert_eq!(events.len(), 3);
        let a = &kv["a"];
        assert_eq!((&*a.value, a.create_revision, a.mod_revision), (&b"2"[..], 5, 5));
    }

    #[test]
    fn puts_on_compared_keys_keep_their_create_revision() {
        let mut kv = BTreeMap::new();
        apply(&Txn::new().then(Op::put("a", b"1".to_vec())), 3, &mut kv).unwrap();
        let txn = Txn::new()
            .when(Compare::unchanged("a", 3))
            .when(Compare::absent("b"))
            .then(Op::put("a", b"2".to_vec()))
            .then(Op::put("b", b"1".to_vec()))
            .then(Op::delete("b"))
            .then(Op::put("b", b"2".to_vec()));
        assert!(matches!(apply(&txn, 9, &mut kv).unwrap(), Applied::Committed(e) if e.len() == 4));
        assert_eq!((kv["a"].create_revision, kv["a"].mod_revision), (3, 9));
        assert_eq!((kv["b"].create_revision, kv["b"].mod_revision), (9, 9));
    }

    #[test]
    fn create_revision_compares_survive_rewrites_but_not_recreation() {
        let mut kv = BTreeMap::new();
        apply(&Txn::new().then(Op::put("lead", b"a".to_vec())), 2, &mut kv).unwrap();
        apply(&Txn::new().then(Op::put("lead", b"a".to_vec())), 3, &mut kv).unwrap();
        let fenced = || Txn::new().when(Compare::created("lead", 2)).then(Op::put("x", b"1".to_vec()));
        assert!(matches!(apply(&fenced(), 4, &mut kv).unwrap(), Applied::Committed(_)), "a rewrite keeps the term");
        apply(&Txn::new().then(Op::delete("lead")).then(Op::put("lead", b"b".to_vec())), 5, &mut kv).unwrap();
        assert!(matches!(apply(&fenced(), 6, &mut kv).unwrap(), Applied::Conflict(k) if k == "lead"));
        assert!(matches!(
            apply(&Txn::new().when(Compare::created("none", 0)), 7, &mut kv).unwrap(),
            Applied::Committed(_)
        ));
    }

    #[test]
    fn filtering_drops_empty_batches() {
        let events = [Event::Delete { key: "a/1".into() }, Event::Delete { key: "b".into() }];
        assert_eq!(filter_events(&events, "a/").unwrap().len(), 1);
        assert_eq!(filter_events(&events, "").unwrap().len(), 2);
        assert!(filter_events(&events, "c").is_none());
    }
}
