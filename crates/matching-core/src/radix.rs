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
//! - **Near the touch it is a ladder.** The best key and its leaf are cached:
//!   finding or adding a level within the best leaf's 64 keys is a bit test
//!   and an array index, the best is a read, and when the best level empties
//!   the next is a leading-zero count in the same leaf (or a short walk up and
//!   down). Only keys beyond that leaf walk from the root: height + 1 nodes.
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
    /// `NIL` when the side is empty.
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
        }
    }
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

    /// The leaf that holds (or would hold) `key`, if it exists.
    #[inline]
    fn leaf_of(&self, key: u64) -> Option<u32> {
        debug_assert!(self.best_leaf != SOLE, "Invariant: a sole level is handled before the tree is searched");
        if self.best_leaf != NIL && key >> BITS == self.best_key >> BITS {
            return Some(self.best_leaf);
        }
        if self.root == NIL || prefix(key, self.root_height) != self.root_prefix {
            return None;
        }
        let mut node = self.root;
        for height in (1..=self.root_height).rev() {
            let n = &self.nodes[node as usize];
            let i = index(key, height);
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
            self.root = parent;
            self.root_height += 1;
            self.root_prefix = if BITS * (self.root_height + 1) >= 64 { 0 } else { self.root_prefix >> BITS };
        }
    }

    /// The leaf for `key`, created (with any nodes on the way) if needed.
    fn leaf_for_insert(&mut self, key: u64) -> u32 {
        if self.root == NIL {
            self.root = self.alloc();
            self.root_height = 0;
            self.root_prefix = prefix(key, 0);
            return self.root;
        }
        self.grow_to(key);
        let mut node = self.root;
        for height in (1..=self.root_height).rev() {
            let i = index(key, height);
            if self.nodes[node as usize].bits & (1 << i) == 0 {
                let child = self.alloc();
                let n = &mut self.nodes[node as usize];
                n.bits |= 1 << i;
                n.slots[i] = child;
            }
            node = self.nodes[node as usize].slots[i];
        }
        node
    }

    /// The greatest key, its level and its leaf, by walking down the
    /// highest children from the root.
    fn find_best(&self) -> Option<(u64, u32, u32)> {
        if self.root == NIL {
            return None;
        }
        let (mut node, mut key) = (self.root, self.root_prefix);
        for _ in 0..self.root_height {
            let n = &self.nodes[node as usize];
            let i = highest_below(n.bits, 64)?;
            key = (key << BITS) | i as u64;
            node = n.slots[i];
        }
        let leaf = &self.nodes[node as usize];
        let i = highest_below(leaf.bits, 64)?;
        Some(((key << BITS) | i as u64, leaf.slots[i], node))
    }

    fn set_best(&mut self) {
        match self.find_best() {
            Some((key, level, leaf)) => (self.best_key, self.best_level, self.best_leaf) = (key, level, leaf),
            None => (self.best_key, self.best_level, self.best_leaf) = (0, NIL, NIL),
        }
    }

    /// Takes `key` out of the tree (it is present), freeing the nodes it
    /// leaves empty; returns its level.
    fn take_out(&mut self, key: u64) -> u32 {
        // The path from the root: (node, slot index) per height, root first.
        let mut path = [(NIL, 0usize); HEIGHT_MAX as usize + 1];
        let mut node = self.root;
        for height in (1..=self.root_height).rev() {
            let i = index(key, height);
            path[height as usize] = (node, i);
            node = self.nodes[node as usize].slots[i];
        }
        let i = index(key, 0);
        let leaf = &mut self.nodes[node as usize];
        debug_assert!(leaf.bits & (1 << i) != 0, "Invariant: the key is present");
        leaf.bits &= !(1 << i);
        let level = leaf.slots[i];
        // Free the nodes left empty, bottom up; the root goes last of all.
        let mut height = 0;
        while self.nodes[node as usize].bits == 0 {
            self.release(node);
            if height == self.root_height {
                self.root = NIL;
                break;
            }
            height += 1;
            let (parent, i) = path[height as usize];
            self.nodes[parent as usize].bits &= !(1 << i);
            node = parent;
        }
        self.len -= 1;
        level
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
        if self.best_leaf == NIL && self.root == NIL {
            // The first level: kept inline, no node yet.
            let level = make();
            (self.best_key, self.best_level, self.best_leaf) = (key, level, SOLE);
            self.len = 1;
            return level;
        }
        if self.best_leaf == SOLE {
            if key == self.best_key {
                return self.best_level;
            }
            self.build_tree_of_sole();
        }
        let leaf = match self.leaf_of(key) {
            Some(leaf) => leaf,
            None => self.leaf_for_insert(key),
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
        if self.best_leaf == NIL || key > self.best_key {
            (self.best_key, self.best_level, self.best_leaf) = (key, level, leaf);
        }
        level
    }

    #[inline]
    fn remove(&mut self, key: u64) -> Option<u32> {
        if self.best_leaf != NIL && key == self.best_key {
            return self.remove_best();
        }
        if self.best_leaf == SOLE {
            return None;
        }
        let leaf = &self.nodes[self.leaf_of(key)? as usize];
        if leaf.bits & (1 << index(key, 0)) == 0 {
            return None;
        }
        Some(self.take_out(key))
    }

    #[inline]
    fn remove_best(&mut self) -> Option<u32> {
        if self.best_leaf == NIL {
            return None;
        }
        if self.best_leaf == SOLE {
            let level = self.best_level;
            (self.best_key, self.best_level, self.best_leaf) = (0, NIL, NIL);
            self.len = 0;
            return Some(level);
        }
        let (key, leaf) = (self.best_key, self.best_leaf);
        let i = index(key, 0);
        // The common case: the next best is in the same leaf.
        let n = &mut self.nodes[leaf as usize];
        if let Some(next) = highest_below(n.bits, i) {
            n.bits &= !(1 << i);
            let level = n.slots[i];
            self.best_key = (key & !63) | next as u64;
            self.best_level = n.slots[next];
            self.len -= 1;
            return Some(level);
        }
        let level = self.take_out(key);
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

impl RadixLevels {
    /// Puts the sole level, kept inline, into a tree (a second level is coming).
    fn build_tree_of_sole(&mut self) {
        let (key, level) = (self.best_key, self.best_level);
        let leaf = self.leaf_for_insert(key);
        let i = index(key, 0);
        let n = &mut self.nodes[leaf as usize];
        n.bits |= 1 << i;
        n.slots[i] = level;
        self.best_leaf = leaf;
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
