//! A bounded memo for values that can always be computed again (parsed packages, derived child
//! keys): never for state whose loss would change an outcome.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// At most `capacity` entries; inserting into a full cache forgets the oldest insertion (first
/// in, first out: a hit does not renew an entry). Values are dropped when forgotten (a secret
/// value's own `Drop` zeroizes it). Each value is boxed where it is kept, so the map may grow
/// as entries come without ever moving a value (a move would leave a copy behind that no
/// `Drop` clears), and an unused cache allocates nothing: a signer keeps one per key for its
/// child keys, most never used (preallocating room for 64 child key packages cost every key
/// about 43 KB of each node's memory).
pub struct BoundedCache<K, V> {
    entries: HashMap<K, Box<V>>,
    /// Keys in the order they were inserted.
    order: VecDeque<K>,
    capacity: usize,
}

impl<K: Clone + Eq + Hash, V> BoundedCache<K, V> {
    /// An empty cache holding at most `capacity` entries (at least one).
    pub fn new(capacity: usize) -> Self {
        BoundedCache {
            entries: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// The value kept for `key`.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.entries.get(key).map(|value| &**value)
    }

    /// The value for `key`: the one kept, or `compute()`'s, which is kept if it succeeds.
    pub fn get_or_try_insert<E>(
        &mut self,
        key: &K,
        compute: impl FnOnce() -> Result<V, E>,
    ) -> Result<&V, E> {
        if !self.entries.contains_key(key) {
            let value = compute()?;
            self.insert(key.clone(), value);
        }
        Ok(&*self.entries[key])
    }

    /// Keeps `value` for `key` (replacing the value kept before, if any).
    pub fn insert(&mut self, key: K, value: V) {
        if self.entries.insert(key.clone(), Box::new(value)).is_some() {
            return;
        }
        self.order.push_back(key);
        while self.order.len() > self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.entries.remove(&oldest);
            }
        }
    }

    /// Entries kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_insertion_is_forgotten_first_and_the_bound_holds() {
        let mut cache = BoundedCache::new(3);
        for i in 0..3 {
            cache.insert(i, i * 10);
        }
        // Replacing a value does not count as a new insertion.
        cache.insert(0, 1);
        assert_eq!(cache.len(), 3);
        cache.insert(3, 30);
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get(&0), None);
        assert_eq!(cache.get(&1), Some(&10));
        assert_eq!(cache.get(&3), Some(&30));
        for i in 4..100 {
            cache.insert(i, i);
            assert!(cache.len() <= 3);
        }
        assert_eq!(cache.get(&99), Some(&99));
        assert_eq!(cache.get(&96), None);
    }

    #[test]
    fn an_unused_cache_allocates_nothing() {
        let cache: BoundedCache<u64, [u8; 512]> = BoundedCache::new(64);
        assert_eq!(cache.entries.capacity(), 0);
        assert_eq!(cache.order.capacity(), 0);
    }

    #[test]
    fn a_failed_computation_keeps_nothing_and_a_kept_value_is_not_recomputed() {
        let mut cache: BoundedCache<u8, u8> = BoundedCache::new(2);
        assert_eq!(cache.get_or_try_insert(&1, || Err("no")), Err("no"));
        assert!(cache.is_empty());
        assert_eq!(cache.get_or_try_insert::<()>(&1, || Ok(7)), Ok(&7));
        let mut called = false;
        let again = cache.get_or_try_insert::<()>(&1, || {
            called = true;
            Ok(8)
        });
        assert_eq!(again, Ok(&7));
        assert!(!called);
    }
}
