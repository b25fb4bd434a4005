//! [`RadixLevels`]: a side's price levels in a 64-way bitmap trie over the
//! key space, the default level structure.
//!
//! A node covers 64 consecutive key blocks of its height: a leaf (height 0)
//! 64 consecutive keys, a node of height `h` 64 nodes of height `h - 1`. A
//! node is a 64-bit occupancy bitmap and 64 `u32` slots (a leaf's slots hold
//! level indices, an inner node's child nodes). So:
//!
//! - **Every operation is O(height)**, and the height is at most 10 (64-bit
//!   keys, 6 bits a level), whatever the keys, their order or their number:
//!   no rebalancing, no window to move, no vector to shift. Worst case, not
//!   amortized.
//! - **The tree is only as tall as the keys are spread.** The root is the
//!   lowest node that covers every key present; a key outside it adds parents
//!   above (at most 10 in all). Prices within 64 ticks of each other live in
//!   one leaf; within 4,096, under one node of height 1.
//! - **Near the touch it is a ladder.** The best key, its leaf and that
//!   leaf's parent are cached: finding, adding or removing a level within the
//!   best leaf's 64 keys is a bit test and an array index, within its
//!   parent's 4,096 keys one step more; the best is a read, and when the best
//!   level empties the next is a leading-zero count in the same leaf (or a
//!   walk up and down). Only keys farther away walk from the root.
//! - **Memory follows the keys present**: an empty side holds no node, and
//!   neither does a side with one level (it is kept beside the root, as the
//!   best); a second level builds the tree (one leaf, 264 bytes, for keys
//!   within 64 of each other). Nodes of emptied blocks go to a free list and
//!   are reused, so steady state allocates nothing.

use crate::levels::PriceLevels;

const NIL: u32 = u32::MAX;
/// Key bits one node level resolves.
const BITS: u32 = 6;
/// The height of a node that covers every `u64` key.
const HEIGHT_MAX: u32 = 10;

#[derive(Clone, Debug)]
struct Node {
    /// Bit `i` is set when `slots[i]` holds a level (leaf) or a child node.
    bits: u64,
    /// In a free node, `slots[0]` links the next free node.
    slots: [u32; 64],
}

/// The block of keys a node of height `h` holding `key` covers: the key's
/// bits above the node's own.
#[inline]
fn prefix(key: u64, height: u32) -> u64 {
    let shift = BITS * (height + 1);
    if shift >= 64 { 0 } else { key >> shift }
}

/// Which slot of a node of height `h` leads to `key`.
#[inline]
fn index(key: u64, height: u32) -> usize {
    ((key >> (BITS * height)) & 63) as usize
}

/// The highest set bit of `bits` below bit `below` (exclusive).
#[inline]
fn highest_below(bits: u64, below: usize) -> Option<usize> {
    let masked = if below >= 64 { bits } else { bits & ((1u64 << below) - 1) };
    (masked != 0).then(|| 63 - masked.leading_zeros() as usize)
}

/// See the module docs.
#[derive(Clone, Debug)]
pub struct RadixLevels {
    nodes: Vec<Node>,
    /// First free node, chained through `slots[0]`.
    free: u32,
    /// `NIL` when no level is in a node (the side is empty or `SOLE`).
    root: u32,
    root_height: u32,
    /// `prefix(key, root_height)` of every key present.
    root_prefix: u64,
    len: usize,
    /// The best (greatest) key, its level and the leaf holding it
    /// (`best_leaf` is `NIL` when the side is empty, `SOLE` when it holds
    /// only this level, which is then in no node).
    best_key: u64,
    best_level: u32,
    best_leaf: u32,
    /// The node of height 1 above `best_leaf` (`NIL` if the root is a leaf).
    best_parent: u32,
}

/// `best_leaf` of a side whose only level is kept inline, not in a node.
const SOLE: u32 = NIL - 1;

impl Default for RadixLevels {
    fn default() -> Self {
        RadixLevels {
            nodes: Vec::new(),
            free: NIL,
            root: NIL,
            root_height: 0,
            root_prefix: 0,
            len: 0,
            best_key: 0,
            best_level: NIL,
            best_leaf: NIL,
            best_parent: NIL,
        }
    }
}

/// Where a walk to a key starts: a node and its height.
#[derive(Clone, Copy)]
struct Start {
    node: u32,
    height: u32,
}

impl RadixLevels {
    fn alloc(&mut self) -> u32 {
        if self.free != NIL {
            let node = self.free;
            self.free = self.nodes[node as usize].slots[0];
            self.nodes[node as usize].bits = 0;
            return node;
        }
        self.nodes.push(Node { bits: 0, slots: [NIL; 64] });
        (self.nodes.len() - 1) as u32
    }

    fn release(&mut self, node: u32) {
        let n = &mut self.nodes[node as usize];
        debug_assert_eq!(n.bits, 0, "Invariant: only an empty node is released");
        n.slots[0] = self.free;
        self.free = node;
    }

    /// The lowest cached node whose block holds `key`: the best leaf, its
    /// parent, or the root (`None`: `key` is outside the tree). The tree
    /// must exist (not `SOLE`).
    #[inline]
    fn start_for(&self, key: u64) -> Option<Start> {
        if self.best_leaf != NIL {
            if key >> BITS == self.best_key >> BITS {
                return Some(Start { node: self.best_leaf, height: 0 });
            }
            if self.best_parent != NIL && key >> (2 * BITS) == self.best_key >> (2 * BITS) {
                return Some(Start { node: self.best_parent, height: 1 });
            }
        }
        (self.root != NIL && prefix(key, self.root_height) == self.root_prefix)
            .then_some(Start { node: self.root, height: self.root_height })
    }

    /// The leaf that holds (or would hold) `key`, if it exists.
    #[inline]
    fn leaf_of(&self, key: u64) -> Option<u32> {
        let Start { mut node, height } = self.start_for(key)?;
        for h in (1..=height).rev() {
            let n = &self.nodes[node as usize];
            let i = index(key, h);
            if n.bits & (1 << i) == 0 {
                return None;
            }
            node = n.slots[i];
        }
        Some(node)
    }

    /// Adds parents above the root until it covers `key`.
    fn grow_to(&mut self, key: u64) {
        while prefix(key, self.root_height) != self.root_prefix {
            debug_assert!(self.root_height < HEIGHT_MAX, "Invariant: a node of height 10 covers every key");
            let parent = self.alloc();
            let i = (self.root_prefix & 63) as usize;
            let p = &mut self.nodes[parent as usize];
            p.bits = 1 << i;
            p.slots[i] = self.root;
            if self.root_height == 0 && self.best_leaf == self.root {
                self.best_parent = parent;
            }
            self.root = parent;
            self.root_height += 1;
            self.root_prefix = if BITS * (self.root_height + 1) >= 64 { 0 } else { self.root_prefix >> BITS };
        }
    }

    /// The leaf for `key` and its parent (`NIL` if the leaf is the root),
    /// created (with any nodes on the way) if needed.
    fn leaf_for_insert(&mut self, key: u64) -> (u32, u32) {
        if self.root == NIL {
            self.root = self.alloc();
            self.root_height = 0;
            self.root_prefix = prefix(key, 0);
            return (self.root, NIL);
        }
        let Start { mut node, height } = match self.start_for(key) {
            Some(start) => start,
            None => {
                self.grow_to(key);
                Start { node: self.root, height: self.root_height }
            }
        };
        let mut parent = if height == 0 { self.best_parent } else { NIL };
        for h in (1..=height).rev() {
            let i = index(key, h);
            if self.nodes[node as usize].bits & (1 << i) == 0 {
                let child = self.alloc();
                let n = &mut self.nodes[node as usize];
                n.bits |= 1 << i;
                n.slots[i] = child;
            }
            if h == 1 {
                parent = node;
            }
            node = self.nodes[node as usize].slots[i];
        }
        (node, parent)
    }

    /// Caches the greatest key, its level, leaf and the leaf's parent, by
    /// walking down the highest children from the root.
    fn set_best(&mut self) {
        if self.root == NIL {
            (self.best_key, self.best_level, self.best_leaf, self.best_parent) = (0, NIL, NIL, NIL);
            return;
        }
        let (mut node, mut key, mut parent) = (self.root, self.root_prefix, NIL);
        for h in (1..=self.root_height).rev() {
            let n = &self.nodes[node as usize];
            let i = 63 - n.bits.leading_zeros() as usize;
            debug_assert!(n.bits != 0, "Invariant: no empty node is kept");
            key = (key << BITS) | i as u64;
            if h == 1 {
                parent = node;
            }
            node = n.slots[i];
        }
        let leaf = &self.nodes[node as usize];
        let i = 63 - leaf.bits.leading_zeros() as usize;
        (self.best_key, self.best_level, self.best_leaf, self.best_parent) =
            ((key << BITS) | i as u64, leaf.slots[i], node, parent);
    }

    /// Takes `key` out of the tree if it is there, freeing the nodes it
    /// leaves empty; returns its level. Never the best's leaf emptying: the
    /// best is removed through `remove_best`.
    fn take_out(&mut self, key: u64) -> Option<u32> {
        let Start { mut node, height: start } = self.start_for(key)?;
        // The path from the start: (node, slot index) per height.
        let mut path = [(NIL, 0usize); HEIGHT_MAX as usize + 1];
        for h in (1..=start).rev() {
            let i = index(key, h);
            let n = &self.nodes[node as usize];
            if n.bits & (1 << i) == 0 {
                return None;
            }
            path[h as usize] = (node, i);
            node = n.slots[i];
        }
        let i = index(key, 0);
        let leaf = &mut self.nodes[node as usize];
        if leaf.bits & (1 << i) == 0 {
            return None;
        }
        leaf.bits &= !(1 << i);
        let level = leaf.slots[i];
        self.len -= 1;
        // Free the nodes left empty, bottom up. A walk that started below the
        // root started at a node holding the best, which stays.
        let mut h = 0;
        while self.nodes[node as usize].bits == 0 {
            debug_assert!(h < start || start == self.root_height, "Invariant: the best's ancestors stay");
            self.release(node);
            if h == self.root_height {
                self.root = NIL;
                break;
            }
            h += 1;
            let (parent, i) = path[h as usize];
            self.nodes[parent as usize].bits &= !(1 << i);
            node = parent;
        }
        Some(level)
    }

    /// Puts the sole level, kept inline, into a tree (a second level is coming).
    fn build_tree_of_sole(&mut self) {
        let (key, level) = (self.best_key, self.best_level);
        self.best_leaf = NIL;
        let (leaf, parent) = self.leaf_for_insert(key);
        let i = index(key, 0);
        let n = &mut self.nodes[leaf as usize];
        n.bits |= 1 << i;
        n.slots[i] = level;
        (self.best_leaf, self.best_parent) = (leaf, parent);
    }

    /// Every level in the tree, best first.
    fn iter_tree(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        // A depth-first walk, highest child first: per height, the node, its
        // key prefix, and the bits of it still to visit.
        let mut stack = [(NIL, 0u64, 0u64); HEIGHT_MAX as usize + 1];
        let mut height = self.root_height as usize;
        if self.root != NIL {
            stack[height] = (self.root, self.root_prefix, self.nodes[self.root as usize].bits);
        }
        let mut done = self.root == NIL;
        std::iter::from_fn(move || {
            while !done {
                let (node, key_prefix, bits) = stack[height];
                let Some(i) = highest_below(bits, 64) else {
                    if height == self.root_height as usize {
                        done = true;
                        return None;
                    }
                    height += 1;
                    continue;
                };
                stack[height].2 &= !(1 << i);
                let n = &self.nodes[node as usize];
                let key = (key_prefix << BITS) | i as u64;
                if height == 0 {
                    return Some((key, n.slots[i]));
                }
                let child = n.slots[i];
                height -= 1;
                stack[height] = (child, key, self.nodes[child as usize].bits);
            }
            None
        })
    }
}

impl PriceLevels for RadixLevels {
    const NAME: &'static str = "radix";

    #[inline]
    fn best(&self) -> Option<(u64, u32)> {
        (self.best_leaf != NIL).then_some((self.best_key, self.best_level))
    }

    #[inline]
    fn get(&self, key: u64) -> Option<u32> {
        if self.best_leaf == SOLE {
            return (key == self.best_key).then_some(self.best_level);
        }
        let leaf = &self.nodes[self.leaf_of(key)? as usize];
        let i = index(key, 0);
        (leaf.bits & (1 << i) != 0).then(|| leaf.slots[i])
    }

    #[inline]
    fn get_or_insert_with(&mut self, key: u64, make: impl FnOnce() -> u32) -> u32 {
        if self.best_leaf == NIL {
            // The first level: kept inline, no node yet.
            let level = make();
            (self.best_key, self.best_level, self.best_leaf, self.best_parent) = (key, level, SOLE, NIL);
            self.len = 1;
            return level;
        }
        if self.best_leaf == SOLE {
            if key == self.best_key {
                return self.best_level;
            }
            self.build_tree_of_sole();
        }
        // Within the best leaf: a bit test (the usual case, no walk).
        let (leaf, parent) = if key >> BITS == self.best_key >> BITS {
            (self.best_leaf, self.best_parent)
        } else {
            self.leaf_for_insert(key)
        };
        let i = index(key, 0);
        let n = &mut self.nodes[leaf as usize];
        if n.bits & (1 << i) != 0 {
            return n.slots[i];
        }
        let level = make();
        n.bits |= 1 << i;
        n.slots[i] = level;
        self.len += 1;
        if key > self.best_key {
            (self.best_key, self.best_level, self.best_leaf, self.best_parent) = (key, level, leaf, parent);
        }
        level
    }

    #[inline]
    fn remove(&mut self, key: u64) -> Option<u32> {
        if self.best_leaf == NIL {
            return None;
        }
        if key == self.best_key {
            return self.remove_best();
        }
        if self.best_leaf == SOLE {
            return None;
        }
        self.take_out(key)
    }

    #[inline]
    fn remove_best(&mut self) -> Option<u32> {
        if self.best_leaf == NIL {
            return None;
        }
        if self.best_leaf == SOLE {
            let level = self.best_level;
            (self.best_key, self.best_level, self.best_leaf, self.best_parent) = (0, NIL, NIL, NIL);
            self.len = 0;
            return Some(level);
        }
        let (key, leaf) = (self.best_key, self.best_leaf);
        let i = index(key, 0);
        let n = &mut self.nodes[leaf as usize];
        n.bits &= !(1 << i);
        let level = n.slots[i];
        self.len -= 1;
        // The common case: the next best is in the same leaf.
        if n.bits != 0 {
            let next = 63 - n.bits.leading_zeros() as usize;
            self.best_key = (key & !63) | next as u64;
            self.best_level = n.slots[next];
            return Some(level);
        }
        // The leaf emptied: free it (and any ancestor it leaves empty),
        // then find the best again from the root.
        n.bits |= 1 << i;
        self.len += 1;
        (self.best_leaf, self.best_parent) = (NIL, NIL);
        let taken = self.take_out(key);
        debug_assert_eq!(taken, Some(level), "Invariant: the best is in the tree");
        self.set_best();
        Some(level)
    }

    fn len(&self) -> usize {
        self.len
    }

    fn iter_best_first(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        let sole = (self.best_leaf == SOLE).then_some((self.best_key, self.best_level));
        sole.into_iter().chain(self.iter_tree())
    }

    fn reserve(&mut self, additional: usize) {
        // A level in a fresh leaf takes a node; nearby levels share it.
        self.nodes.reserve(additional.div_ceil(16));
    }
}
