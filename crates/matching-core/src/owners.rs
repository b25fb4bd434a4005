//! Who owns which resting orders: what a mass cancel walks.
//!
//! Every resting order is on exactly one **owner list**: the orders of one
//! user in one book on one side, doubly linked through the order slots
//! (`Slot::owner_next` / `owner_prev`, `u32` arena indices like the level
//! FIFOs). A user's lists (one per book it rests in) are chained together,
//! so a mass cancel finds exactly the orders it cancels, whatever else rests:
//! with a symbol and a side it walks one list; with neither, the user's
//! chain. Linking an order costs one hash lookup of `(user, book)`;
//! unlinking is O(1) array work, plus a hash removal when a list empties.
//! The lists hold no order: a mass cancel sorts what it collected by id.

use rustc_hash::FxHashMap;

use crate::orders::NIL;
use crate::types::{Side, UserId};

/// The orders of one user in one book, per side.
#[derive(Clone, Copy, Debug)]
pub(crate) struct OwnerList {
    pub(crate) user: UserId,
    pub(crate) book: u32,
    /// First slot of the buy list and of the sell list, or `NIL`.
    pub(crate) heads: [u32; 2],
    /// Orders on both lists. Invariant: at least 1 while the list is in use.
    pub(crate) count: u32,
    /// The user's next and previous list (another book), or `NIL`. In a
    /// free list entry, `next_of_user` links the free entries.
    pub(crate) next_of_user: u32,
    pub(crate) prev_of_user: u32,
}

#[inline]
pub(crate) fn side_index(side: Side) -> usize {
    match side {
        Side::Buy => 0,
        Side::Sell => 1,
    }
}

#[derive(Clone, Default)]
pub(crate) struct Owners {
    pub(crate) lists: Vec<OwnerList>,
    /// First free entry of `lists`, chained through `next_of_user`.
    free: u32,
    /// `(user, book)` to its list, for every list in use.
    by_user_book: FxHashMap<(UserId, u32), u32>,
    /// A user's first list, for every user with a resting order.
    first_of_user: FxHashMap<UserId, u32>,
}

impl Owners {
    pub(crate) fn new() -> Owners {
        Owners { free: NIL, ..Owners::default() }
    }

    /// The list of `(user, book)`, created (and chained to the user's
    /// other lists) if the user has nothing resting in that book yet.
    #[inline]
    pub(crate) fn list_for(&mut self, user: UserId, book: u32) -> u32 {
        if let Some(&li) = self.by_user_book.get(&(user, book)) {
            return li;
        }
        self.create(user, book)
    }

    #[cold]
    fn create(&mut self, user: UserId, book: u32) -> u32 {
        let next_of_user = self.first_of_user.get(&user).copied().unwrap_or(NIL);
        let list = OwnerList { user, book, heads: [NIL; 2], count: 0, next_of_user, prev_of_user: NIL };
        let li = if self.free != NIL {
            let li = self.free;
            self.free = self.lists[li as usize].next_of_user;
            self.lists[li as usize] = list;
            li
        } else {
            self.lists.push(list);
            (self.lists.len() - 1) as u32
        };
        if next_of_user != NIL {
            self.lists[next_of_user as usize].prev_of_user = li;
        }
        self.first_of_user.insert(user, li);
        self.by_user_book.insert((user, book), li);
        li
    }

    /// Forgets list `li`, which has just lost its last order.
    #[cold]
    pub(crate) fn release(&mut self, li: u32) {
        let OwnerList { user, book, next_of_user, prev_of_user, count, .. } = self.lists[li as usize];
        debug_assert_eq!(count, 0, "Invariant: only an empty owner list is released");
        self.by_user_book.remove(&(user, book));
        if prev_of_user == NIL {
            if next_of_user == NIL {
                self.first_of_user.remove(&user);
            } else {
                self.first_of_user.insert(user, next_of_user);
            }
        } else {
            self.lists[prev_of_user as usize].next_of_user = next_of_user;
        }
        if next_of_user != NIL {
            self.lists[next_of_user as usize].prev_of_user = prev_of_user;
        }
        self.lists[li as usize].next_of_user = self.free;
        self.free = li;
    }

    /// The list of `(user, book)`, if the user rests there.
    pub(crate) fn find(&self, user: UserId, book: u32) -> Option<u32> {
        self.by_user_book.get(&(user, book)).copied()
    }

    /// Every list of `user`, one per book it rests in, in no particular order.
    pub(crate) fn lists_of(&self, user: UserId) -> impl Iterator<Item = u32> + '_ {
        let mut li = self.first_of_user.get(&user).copied().unwrap_or(NIL);
        std::iter::from_fn(move || {
            if li == NIL {
                return None;
            }
            let current = li;
            li = self.lists[li as usize].next_of_user;
            Some(current)
        })
    }

    /// Lists in use and users with a resting order (for invariant checks).
    pub(crate) fn sizes(&self) -> (usize, usize) {
        (self.by_user_book.len(), self.first_of_user.len())
    }

    /// Checks the maps against the chains: every list in use is in its
    /// user's chain exactly once, with consistent back links.
    pub(crate) fn validate(&self) -> Result<usize, String> {
        let mut chained = 0;
        for (&user, &first) in &self.first_of_user {
            let mut prev = NIL;
            for li in self.lists_of(user) {
                let list = self.lists.get(li as usize).ok_or_else(|| format!("owners: list {li} out of range"))?;
                if list.user != user || list.prev_of_user != prev {
                    return Err(format!("owners: list {li} is chained to user {user} wrongly"));
                }
                if self.by_user_book.get(&(user, list.book)) != Some(&li) {
                    return Err(format!("owners: list {li} of user {user} is not in the map"));
                }
                if list.count == 0 {
                    return Err(format!("owners: empty list {li} of user {user} is in use"));
                }
                prev = li;
                chained += 1;
                if chained > self.by_user_book.len() {
                    return Err(format!("owners: the chain of user {user} (from {first}) has a cycle"));
                }
            }
        }
        if chained != self.by_user_book.len() {
            return Err(format!("owners: {chained} lists chained, {} in the map", self.by_user_book.len()));
        }
        Ok(chained)
    }
}
