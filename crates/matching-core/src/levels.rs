//! Structures for one side's ordered set of price levels.
//!
//! A side maps a *key* to the index of a level in its book's level arena.
//! Keys are "greater is better": a bid's key is its price, an ask's key is
//! `u64::MAX - price`, so both sides share one implementation and the best
//! level is always the greatest key.
//!
//! Four implementations sit behind [`PriceLevels`]: the default
//! [`crate::RadixLevels`] (a 64-way bitmap trie: every operation O(height),
//! height at most 10, whatever the keys), and three kept for comparison:
//! [`SortedVecLevels`], [`BTreeLevels`] and [`LadderLevels`] (the earlier
//! default, fast near the touch but with a window that moves in time
//! proportional to the jump). `matching-engine bench --levels all` measures
//! them on the same flows; `docs/BENCHMARKS.md` has the table.

use std::collections::BTreeMap;

/// An ordered map from level key to level index, best (greatest key) first.
///
/// What an implementation must guarantee (the book relies on each, and
/// `levels.rs`'s model test and the differential tests check them):
///
/// - it behaves exactly as a `BTreeMap<u64, u32>` would, for every `u64`
///   key (not only keys of valid prices), in any order of operations;
/// - `best()` is the greatest key present and is cheap (the book asks for it
///   on every order); `remove_best()` removes exactly that one;
/// - `iter_best_first()` yields every `(key, level)` once, keys descending;
/// - it never panics on any sequence of calls, and it allocates only when
///   it holds more levels (or nodes) than it ever held before, so that a
///   steady state allocates nothing (`zero_alloc.rs`);
/// - `get_or_insert_with` calls `make` only when it inserts.
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

/// A price ladder: a window of [`LadderLevels::WINDOW`] consecutive keys held
/// in a direct-indexed array with an occupancy bitmap, and every key below
/// the window in a [`SortedVecLevels`].
///
/// Finding a level near the touch is an array index, the best level is two
/// leading-zero counts, and a level that appears or empties costs a bit flip,
/// with no search and no memmove. The window follows the touch: it holds the
/// best key (with [`LadderLevels::HEADROOM`] keys of room above it for
/// better prices), and moves when a better key arrives above it, when it
/// empties, or when the best falls into its bottom quarter. Keys it leaves
/// behind go to the sorted vector, which only ever holds keys below the
/// window, so moving is a push or pop at the vector's end.
#[derive(Clone, Debug)]
pub struct LadderLevels {
    /// `cells[k - base]` is the level of key `k` for keys in the window, or
    /// `NIL`. Empty until the first use (or `reserve`).
    cells: Vec<u32>,
    base: u64,
    /// Bit `i % 64` of `words[i / 64]` is set when `cells[i]` holds a level.
    words: [u64; LadderLevels::WORDS],
    /// Bit `w` is set when `words[w]` is not zero.
    summary: u64,
    in_window: usize,
    /// Invariant: every key here is below `base`, and no key is above the window.
    below: SortedVecLevels,
}

const NIL_LEVEL: u32 = u32::MAX;

impl Default for LadderLevels {
    fn default() -> Self {
        LadderLevels {
            cells: Vec::new(),
            base: 0,
            words: [0; LadderLevels::WORDS],
            summary: 0,
            in_window: 0,
            below: SortedVecLevels::default(),
        }
    }
}

impl LadderLevels {
    /// Keys in the window (ticks of price).
    pub const WINDOW: u64 = 1024;
    const WORDS: usize = (Self::WINDOW / 64) as usize;
    /// Room kept above the best key when the window moves.
    pub const HEADROOM: u64 = Self::WINDOW / 8;

    #[inline]
    fn offset(&self, key: u64) -> Option<usize> {
        let offset = key.checked_sub(self.base)?;
        (offset < Self::WINDOW).then_some(offset as usize)
    }

    /// Offset of the best (highest) key in the window.
    #[inline]
    fn top_offset(&self) -> Option<usize> {
        if self.summary == 0 {
            return None;
        }
        let w = 63 - self.summary.leading_zeros() as usize;
        Some(w * 64 + 63 - self.words[w].leading_zeros() as usize)
    }

    #[inline]
    fn set(&mut self, offset: usize, level: u32) {
        if self.cells.is_empty() {
            self.cells = vec![NIL_LEVEL; Self::WINDOW as usize];
        }
        debug_assert_eq!(self.cells[offset], NIL_LEVEL);
        self.cells[offset] = level;
        self.words[offset / 64] |= 1 << (offset % 64);
        self.summary |= 1 << (offset / 64);
        self.in_window += 1;
    }

    #[inline]
    fn clear(&mut self, offset: usize) -> u32 {
        let level = std::mem::replace(&mut self.cells[offset], NIL_LEVEL);
        debug_assert_ne!(level, NIL_LEVEL);
        let w = offset / 64;
        self.words[w] &= !(1 << (offset % 64));
        if self.words[w] == 0 {
            self.summary &= !(1 << w);
        }
        self.in_window -= 1;
        level
    }

    /// Moves the window so that `top` (the greatest key there is, or about
    /// to be) sits `HEADROOM` below the window's end.
    #[cold]
    fn recenter(&mut self, top: u64) {
        // Everything in the window is above everything below it: in
        // ascending order, the window's levels go onto the vector's end.
        let mut offset = 0;
        while self.in_window > 0 {
            let w = offset / 64;
            let bits = self.words[w] >> (offset % 64);
            if bits == 0 {
                offset = (w + 1) * 64;
                continue;
            }
            offset += bits.trailing_zeros() as usize;
            let level = self.clear(offset);
            self.below.keys.push(self.base + offset as u64);
            self.below.levels.push(level);
            offset += 1;
        }
        self.base = top.saturating_sub(Self::WINDOW - Self::HEADROOM - 1);
        // And back: the vector's greatest keys that the new window covers.
        while let Some(&key) = self.below.keys.last() {
            if key < self.base {
                break;
            }
            debug_assert!(key - self.base < Self::WINDOW, "Invariant: no key above the window");
            self.below.keys.pop();
            let Some(level) = self.below.levels.pop() else { break };
            self.set((key - self.base) as usize, level);
        }
    }

    /// After a removal: keep the best level in the window, and not near its bottom.
    #[inline]
    fn settle(&mut self) {
        match self.top_offset() {
            Some(top) if top as u64 >= Self::WINDOW / 4 => {}
            Some(top) => self.recenter(self.base + top as u64),
            None => {
                if let Some((key, _)) = self.below.best() {
                    self.recenter(key);
                }
            }
        }
    }
}

impl PriceLevels for LadderLevels {
    const NAME: &'static str = "ladder";

    #[inline]
    fn best(&self) -> Option<(u64, u32)> {
        match self.top_offset() {
            Some(offset) => Some((self.base + offset as u64, self.cells[offset])),
            None => self.below.best(),
        }
    }

    #[inline]
    fn get(&self, key: u64) -> Option<u32> {
        match self.offset(key) {
            Some(offset) if !self.cells.is_empty() => {
                let level = self.cells[offset];
                (level != NIL_LEVEL).then_some(level)
            }
            Some(_) => None,
            None if key < self.base => self.below.get(key),
            None => None,
        }
    }

    #[inline]
    fn get_or_insert_with(&mut self, key: u64, make: impl FnOnce() -> u32) -> u32 {
        if let Some(offset) = self.offset(key) {
            if let Some(level) = self.cells.get(offset).copied().filter(|&l| l != NIL_LEVEL) {
                return level;
            }
            let level = make();
            self.set(offset, level);
            return level;
        }
        if key < self.base && self.in_window > 0 {
            return self.below.get_or_insert_with(key, make);
        }
        // Above the window (a new best), or the window is empty: move it here.
        if let Some(level) = self.below.get(key) {
            return level;
        }
        let top = self.below.best().map_or(key, |(best, _)| best.max(key));
        self.recenter(top);
        let level = make();
        match self.offset(key) {
            Some(offset) => self.set(offset, level),
            None => {
                self.below.get_or_insert_with(key, || level);
            }
        }
        level
    }

    #[inline]
    fn remove(&mut self, key: u64) -> Option<u32> {
        let level = match self.offset(key) {
            Some(offset) if self.cells.get(offset).is_some_and(|&l| l != NIL_LEVEL) => self.clear(offset),
            Some(_) => return None,
            None => return self.below.remove(key),
        };
        self.settle();
        Some(level)
    }

    #[inline]
    fn remove_best(&mut self) -> Option<u32> {
        let level = match self.top_offset() {
            Some(offset) => self.clear(offset),
            None => return self.below.remove_best(),
        };
        self.settle();
        Some(level)
    }

    fn len(&self) -> usize {
        self.in_window + self.below.len()
    }

    fn iter_best_first(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        let mut words = self.words;
        let window = std::iter::from_fn(move || {
            let w = words.iter().rposition(|&bits| bits != 0)?;
            let bit = 63 - words[w].leading_zeros() as usize;
            words[w] &= !(1 << bit);
            let offset = w * 64 + bit;
            Some((self.base + offset as u64, self.cells[offset]))
        });
        window.chain(self.below.iter_best_first())
    }

    fn reserve(&mut self, additional: usize) {
        if self.cells.is_empty() {
            self.cells = vec![NIL_LEVEL; Self::WINDOW as usize];
        }
        self.below.reserve(additional);
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

    /// Random inserts and removes against a `BTreeMap` model, with keys
    /// around a centre that drifts, jumps now and then by more than a ladder
    /// window, and occasionally far keys at both ends of the range.
    fn exercise<L: PriceLevels>() {
        let mut side = L::default();
        let mut next = 0u32;
        let mut model = BTreeMap::new();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut centre: u64 = 100_000;
        for step in 0..60_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            match x % 1000 {
                0 => centre = centre.saturating_add(5_000),
                1 => centre = centre.saturating_sub(5_000),
                _ if x.is_multiple_of(3) => centre = centre.saturating_add(x % 7).saturating_sub(3),
                _ => {}
            }
            let spread = [1, 4, 16, 64, 1500][((x >> 12) % 5) as usize];
            let key = match (x >> 20) % 200 {
                0 => x % 50,
                1 => u64::MAX - x % 50,
                _ => centre.saturating_add((x >> 24) % spread).saturating_sub(spread / 2),
            };
            match (x >> 32) % 6 {
                0..=2 => {
                    let got = side.get_or_insert_with(key, || {
                        next += 1;
                        next
                    });
                    let want = *model.entry(key).or_insert(next);
                    assert_eq!(got, want, "step {step}: insert {key}");
                }
                3 | 4 => assert_eq!(side.remove(key), model.remove(&key), "step {step}: remove {key}"),
                _ => assert_eq!(side.remove_best(), model.pop_last().map(|(_, v)| v), "step {step}: remove best"),
            }
            assert_eq!(side.best(), model.last_key_value().map(|(&k, &v)| (k, v)), "step {step}");
            assert_eq!(side.get(key), model.get(&key).copied(), "step {step}: get {key}");
            assert_eq!(side.len(), model.len());
            if step.is_multiple_of(499) {
                let all: Vec<_> = side.iter_best_first().collect();
                let want: Vec<_> = model.iter().rev().map(|(&k, &v)| (k, v)).collect();
                assert_eq!(all, want, "step {step}");
            }
        }
    }

    #[test]
    fn sorted_vec_matches_a_btree_model() {
        exercise::<SortedVecLevels>();
    }

    #[test]
    fn ladder_matches_a_btree_model() {
        exercise::<LadderLevels>();
    }

    #[test]
    fn btree_matches_a_btree_model() {
        exercise::<BTreeLevels>();
    }

    #[test]
    fn radix_matches_a_btree_model() {
        exercise::<crate::radix::RadixLevels>();
    }
}
