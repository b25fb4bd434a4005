//! Candidate structures for one side's ordered set of price levels.
//!
//! A side maps a *key* to the index of a level in its book's level arena.
//! Keys are "greater is better": a bid's key is its price, an ask's key is
//! `u64::MAX - price`, so both sides share one implementation and the best
//! level is always the greatest key.
//!
//! Two candidates sit behind [`PriceLevels`]; `matching-engine bench
//! --levels all` measures them on the same flow and `docs/BENCHMARKS.md`
//! records why [`SortedVecLevels`] is the default.

use std::collections::BTreeMap;

/// An ordered map from level key to level index, best (greatest key) first.
pub trait PriceLevels: Default + Clone {
    /// Name used in benchmark tables.
    const NAME: &'static str;

    /// The best (greatest-key) level.
    fn best(&self) -> Option<(u64, u32)>;

    /// The level with this key.
    fn get(&self, key: u64) -> Option<u32>;

    /// The level with this key, or the one `make` creates and the map
    /// inserts in order. Returns the level index.
    fn get_or_insert_with(&mut self, key: u64, make: impl FnOnce() -> u32) -> u32;

    /// Removes the level with this key; returns its index.
    fn remove(&mut self, key: u64) -> Option<u32>;

    /// Removes the best level; returns its index.
    fn remove_best(&mut self) -> Option<u32>;

    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every level, best first.
    fn iter_best_first(&self) -> impl Iterator<Item = (u64, u32)> + '_;

    /// Room for `additional` more levels without allocating (where the
    /// structure can promise that).
    fn reserve(&mut self, additional: usize);
}

/// Keys sorted ascending in one vector, their levels beside them in
/// another, so the best level is the last element: taking from the touch is
/// a `pop`, and inserting near the touch moves only the few elements behind
/// it. A lookup first counts, without branching, how many of the last
/// [`SortedVecLevels::SCAN_FROM_TOUCH`] keys are better than the one sought
/// (most activity is a few levels from the touch, and those keys share a
/// cache line), and binary-searches the rest only when all of them are.
#[derive(Clone, Default, Debug)]
pub struct SortedVecLevels {
    /// Invariant: strictly ascending.
    keys: Vec<u64>,
    /// `levels[i]` is the level of `keys[i]`.
    levels: Vec<u32>,
}

impl SortedVecLevels {
    /// How many entries from the touch are scanned before binary search.
    pub const SCAN_FROM_TOUCH: usize = 8;

    /// `Ok(index)` of the key, or `Err(index)` where it would be inserted.
    #[inline]
    fn position(&self, key: u64) -> Result<usize, usize> {
        const SCAN: usize = SortedVecLevels::SCAN_FROM_TOUCH;
        let len = self.keys.len();
        if len < SCAN {
            return self.keys.binary_search(&key);
        }
        let Ok(near_touch) = <&[u64; SCAN]>::try_from(&self.keys[len - SCAN..]) else {
            return self.keys.binary_search(&key);
        };
        let better = near_touch.iter().map(|&k| (k > key) as usize).sum::<usize>();
        if better < SCAN {
            let i = len - better - 1;
            return if self.keys[i] == key { Ok(i) } else { Err(i + 1) };
        }
        self.keys[..len - SCAN].binary_search(&key)
    }
}

impl PriceLevels for SortedVecLevels {
    const NAME: &'static str = "sorted-vec";

    #[inline]
    fn best(&self) -> Option<(u64, u32)> {
        Some((*self.keys.last()?, *self.levels.last()?))
    }

    #[inline]
    fn get(&self, key: u64) -> Option<u32> {
        self.position(key).ok().map(|i| self.levels[i])
    }

    #[inline]
    fn get_or_insert_with(&mut self, key: u64, make: impl FnOnce() -> u32) -> u32 {
        match self.position(key) {
            Ok(i) => self.levels[i],
            Err(i) => {
                let level = make();
                self.keys.insert(i, key);
                self.levels.insert(i, level);
                level
            }
        }
    }

    #[inline]
    fn remove(&mut self, key: u64) -> Option<u32> {
        let i = self.position(key).ok()?;
        self.keys.remove(i);
        Some(self.levels.remove(i))
    }

    #[inline]
    fn remove_best(&mut self) -> Option<u32> {
        self.keys.pop()?;
        self.levels.pop()
    }

    fn len(&self) -> usize {
        self.keys.len()
    }

    fn iter_best_first(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.keys.iter().rev().copied().zip(self.levels.iter().rev().copied())
    }

    fn reserve(&mut self, additional: usize) {
        self.keys.reserve(additional);
        self.levels.reserve(additional);
    }
}

/// The textbook choice: a B-tree from key to level. O(log n) everywhere,
/// but every new level may allocate a node.
#[derive(Clone, Default, Debug)]
pub struct BTreeLevels {
    map: BTreeMap<u64, u32>,
}

impl PriceLevels for BTreeLevels {
    const NAME: &'static str = "btree";

    #[inline]
    fn best(&self) -> Option<(u64, u32)> {
        self.map.last_key_value().map(|(&k, &v)| (k, v))
    }

    #[inline]
    fn get(&self, key: u64) -> Option<u32> {
        self.map.get(&key).copied()
    }

    #[inline]
    fn get_or_insert_with(&mut self, key: u64, make: impl FnOnce() -> u32) -> u32 {
        *self.map.entry(key).or_insert_with(make)
    }

    #[inline]
    fn remove(&mut self, key: u64) -> Option<u32> {
        self.map.remove(&key)
    }

    #[inline]
    fn remove_best(&mut self) -> Option<u32> {
        self.map.pop_last().map(|(_, v)| v)
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn iter_best_first(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.map.iter().rev().map(|(&k, &v)| (k, v))
    }

    fn reserve(&mut self, _additional: usize) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise<L: PriceLevels>() {
        let mut side = L::default();
        let mut next = 0u32;
        let mut model = BTreeMap::new();
        // A deterministic pseudo-random sequence of inserts and removes.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = 1000 + (x % 64);
            match x % 5 {
                0..=2 => {
                    let got = side.get_or_insert_with(key, || {
                        next += 1;
                        next
                    });
                    let want = *model.entry(key).or_insert(next);
                    assert_eq!(got, want);
                }
                3 => assert_eq!(side.remove(key), model.remove(&key)),
                _ => assert_eq!(side.remove_best(), model.pop_last().map(|(_, v)| v)),
            }
            assert_eq!(side.best(), model.last_key_value().map(|(&k, &v)| (k, v)));
            assert_eq!(side.get(key), model.get(&key).copied());
            assert_eq!(side.len(), model.len());
        }
        let all: Vec<_> = side.iter_best_first().collect();
        let want: Vec<_> = model.iter().rev().map(|(&k, &v)| (k, v)).collect();
        assert_eq!(all, want);
    }

    #[test]
    fn sorted_vec_matches_a_btree_model() {
        exercise::<SortedVecLevels>();
    }

    #[test]
    fn btree_matches_a_btree_model() {
        exercise::<BTreeLevels>();
    }
}
