//! A map for the few entries a site's state holds (a site's terminals, its raised flags, a
//! terminal's departing conditions): a sorted `Vec`, so one entry costs its size, not a B-tree
//! leaf sized for eleven. Iterates in key order and serializes as a map, exactly as the
//! `BTreeMap` it replaces (the stored state JSON is unchanged).
//!
//! Must never be used for sets that grow with the fleet: lookups are a binary search, inserts
//! shift the tail.

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};
use std::borrow::Borrow;
use std::fmt;
use std::marker::PhantomData;

/// Before a push onto `v`: when it has no room yet, room for exactly `n`, where a `Vec`'s first
/// growth makes room for four (or doubles to eight for six). For the per-terminal and per-site
/// vectors whose usual length is known (README "Memory per terminal").
pub fn room_for_first<T>(v: &mut Vec<T>, n: usize) {
    if v.capacity() == 0 {
        v.reserve_exact(n);
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SmallMap<K, V> {
    entries: Vec<(K, V)>,
}

impl<K, V> Default for SmallMap<K, V> {
    fn default() -> Self {
        SmallMap {
            entries: Vec::new(),
        }
    }
}

impl<K: Ord, V> SmallMap<K, V> {
    fn find<Q: Ord + ?Sized>(&self, k: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
    {
        self.entries.binary_search_by(|(x, _)| x.borrow().cmp(k))
    }

    pub fn get<Q: Ord + ?Sized>(&self, k: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.find(k).ok().map(|i| &self.entries[i].1)
    }

    pub fn get_mut<Q: Ord + ?Sized>(&mut self, k: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        self.find(k).ok().map(|i| &mut self.entries[i].1)
    }

    pub fn contains_key<Q: Ord + ?Sized>(&self, k: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.find(k).is_ok()
    }

    /// Room for one more entry: exactly one for the first (most of these maps hold one entry),
    /// doubling after it.
    fn make_room(&mut self) {
        room_for_first(&mut self.entries, 1);
    }

    /// Inserts or replaces; returns the value replaced.
    pub fn insert(&mut self, k: K, v: V) -> Option<V> {
        match self.find(&k) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, v)),
            Err(i) => {
                self.make_room();
                self.entries.insert(i, (k, v));
                None
            }
        }
    }

    pub fn remove<Q: Ord + ?Sized>(&mut self, k: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        self.find(k).ok().map(|i| self.entries.remove(i).1)
    }

    /// The value under `k`, inserted from `make` when absent.
    pub fn get_or_insert_with(&mut self, k: K, make: impl FnOnce() -> V) -> &mut V {
        let i = match self.find(&k) {
            Ok(i) => i,
            Err(i) => {
                self.make_room();
                self.entries.insert(i, (k, make()));
                i
            }
        };
        &mut self.entries[i].1
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        self.entries.retain_mut(|(k, v)| keep(k, v));
        if self.entries.is_empty() {
            self.entries = Vec::new();
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&K, &mut V)> {
        self.entries.iter_mut().map(|(k, v)| (&*k, v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.entries.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().map(|(_, v)| v)
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.entries.iter_mut().map(|(_, v)| v)
    }

    /// Gives back spare capacity (a state kept for long should not hold a grown buffer).
    pub fn shrink_to_fit(&mut self) {
        self.entries.shrink_to_fit();
    }
}

impl<K: Ord + Borrow<Q>, Q: Ord + ?Sized, V> std::ops::Index<&Q> for SmallMap<K, V> {
    type Output = V;

    /// Panics when absent, as `BTreeMap`'s index does: for tests and known keys only.
    fn index(&self, k: &Q) -> &V {
        self.get(k).expect("no entry for the key")
    }
}

impl<'a, K: Ord, V> IntoIterator for &'a SmallMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = std::iter::Map<std::slice::Iter<'a, (K, V)>, fn(&'a (K, V)) -> (&'a K, &'a V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(|(k, v)| (k, v))
    }
}

impl<K: Ord, V> FromIterator<(K, V)> for SmallMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(it: I) -> Self {
        let mut m = SmallMap::default();
        for (k, v) in it {
            m.insert(k, v);
        }
        m
    }
}

impl<K: Serialize, V: Serialize> Serialize for SmallMap<K, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.entries.len()))?;
        for (k, v) in &self.entries {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de, K: Deserialize<'de> + Ord, V: Deserialize<'de>> Deserialize<'de> for SmallMap<K, V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V2<K, V>(PhantomData<(K, V)>);
        impl<'de, K: Deserialize<'de> + Ord, V: Deserialize<'de>> Visitor<'de> for V2<K, V> {
            type Value = SmallMap<K, V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                let mut m = SmallMap {
                    entries: Vec::with_capacity(a.size_hint().unwrap_or(0).min(64)),
                };
                while let Some((k, v)) = a.next_entry()? {
                    m.insert(k, v);
                }
                Ok(m)
            }
        }
        d.deserialize_map(V2(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn behaves_and_serializes_as_the_btreemap_it_replaces() {
        let mut s: SmallMap<String, u32> = SmallMap::default();
        let mut b: BTreeMap<String, u32> = BTreeMap::new();
        for (k, v) in [("pc-2", 2), ("pc-1", 1), ("pc-3", 3), ("pc-1", 10)] {
            assert_eq!(s.insert(k.into(), v), b.insert(k.into(), v));
        }
        assert_eq!(s.remove("pc-3"), b.remove("pc-3"));
        assert_eq!(s.get("pc-1"), b.get("pc-1"));
        assert!(!s.contains_key("pc-3"));
        let js = serde_json::to_string(&s).unwrap();
        assert_eq!(js, serde_json::to_string(&b).unwrap());
        let back: SmallMap<String, u32> = serde_json::from_str(r#"{"z":1,"a":2}"#).unwrap();
        assert_eq!(back.keys().collect::<Vec<_>>(), ["a", "z"]);
        *s.get_or_insert_with("pc-0".into(), || 7) += 1;
        assert_eq!(s.get("pc-0"), Some(&8));
        s.retain(|_, v| *v > 5);
        assert_eq!(s.len(), 2);
    }

    /// Most of these maps hold one entry (a site's one terminal, its one raised flag): the first
    /// insert makes room for exactly one, by either way in, and a second still fits (README
    /// "Memory per terminal").
    #[test]
    fn a_first_entry_takes_room_for_one() {
        let mut a: SmallMap<String, u32> = SmallMap::default();
        a.insert("pc-1".into(), 1);
        assert_eq!(a.entries.capacity(), 1);
        let mut b: SmallMap<String, u32> = SmallMap::default();
        b.get_or_insert_with("pc-1".into(), || 1);
        assert_eq!(b.entries.capacity(), 1);
        b.insert("pc-2".into(), 2);
        assert_eq!(b.len(), 2);
        assert!(b.entries.capacity() >= 2);
    }
}
