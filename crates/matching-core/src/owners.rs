//! Who owns which resting orders: what a mass cancel walks.
//!
//! Every resting order is on exactly one **owner list**, or on its way
//! there (see `Orders::owner_pending`): the orders of one user in one book
//! on one side, doubly linked through the order slots (`Slot::owner_next` /
//! `owner_prev`, `u32` arena indices like the level FIFOs). A user's lists
//! (one per book it rests in) are chained together, so a mass cancel finds
//! exactly the orders it cancels, whatever else rests: with a symbol and a
//! side it walks one list; with neither, the user's chain. Linking an order
//! costs one hash lookup of `(user, book)`; unlinking is O(1). The lists
//! hold no order: a mass cancel sorts by id. Nothing here allocates once
//! the number of lists has reached its high-water mark.
//!
//! A list that empties is not forgotten at once: it waits, empty, on an idle
//! queue, and a user who rests an order there again finds it without a hash
//! insert or removal. Only once more than [`IDLE_MAX`] lists wait is the
//! oldest forgotten, so memory stays bounded by the lists in use plus that.

use rustc_hash::FxHashMap;

use crate::orders::NIL;
use crate::types::{Side, UserId};

/// Empty lists kept for their users before the oldest is forgotten (4 in
/// debug builds, so the tests forget lists often).
pub(crate) const IDLE_MAX: usize = if cfg!(debug_assertions) { 4 } else { 1024 };

/// The orders of one user in one book, per side.
#[derive(Clone, Copy, Debug)]
pub(crate) struct OwnerList {
    pub(crate) user: UserId,
    pub(crate) book: u32,
    /// First slot of the buy list and of the sell list, or `NIL`.
    pub(crate) heads: [u32; 2],
    /// Orders on both lists.
    pub(crate) count: u32,
    /// The user's next and previous list (another book), or `NIL`. In a
    /// free list entry, `next_of_user` links the free entries.
    pub(crate) next_of_user: u32,
    pub(crate) prev_of_user: u32,
    /// On the idle queue (it emptied, and may still be empty).
    pub(crate) queued: bool,
}

impl OwnerList {
    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }
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
    /// `(user, book)` to its list, for every list in use (some of them
    /// empty, waiting on `idle`).
    by_user_book: FxHashMap<(UserId, u32), u32>,
    /// A user's first list, for every user with a list in use.
    first_of_user: FxHashMap<UserId, u32>,
    /// Lists that emptied, oldest first (each once: see `OwnerList::queued`).
    idle: std::collections::VecDeque<u32>,
}

impl Owners {
    /// Owner lists with room made up front for `lists` of them (there are
    /// never more in use than resting orders, plus the idle ones).
    pub(crate) fn new(lists: usize) -> Owners {
        let lists = lists + IDLE_MAX;
        let mut owners = Owners { free: NIL, ..Owners::default() };
        owners.lists.reserve(lists);
        owners.by_user_book.reserve(lists);
        owners.first_of_user.reserve(lists);
        owners.idle.reserve(IDLE_MAX + 1);
        owners
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
        let li = if self.free != NIL {
            let li = self.free;
            let list = &mut self.lists[li as usize];
            self.free = list.next_of_user;
            (list.user, list.book, list.next_of_user, list.prev_of_user) = (user, book, next_of_user, NIL);
            li
        } else {
            let heads = [NIL; 2];
            self.lists.push(OwnerList { user, book, heads, count: 0, next_of_user, prev_of_user: NIL, queued: false });
            (self.lists.len() - 1) as u32
        };
        if next_of_user != NIL {
            self.lists[next_of_user as usize].prev_of_user = li;
        }
        self.first_of_user.insert(user, li);
        self.by_user_book.insert((user, book), li);
        li
    }

    /// List `li` has just lost its last order: it waits on the idle queue,
    /// and the oldest waiting list is forgotten if too many wait.
    #[inline]
    pub(crate) fn emptied(&mut self, li: u32) {
        let list = &mut self.lists[li as usize];
        debug_assert!(list.is_empty(), "Invariant: only an empty owner list is idle");
        if !list.queued {
            list.queued = true;
            self.idle.push_back(li);
            if self.idle.len() > IDLE_MAX {
                self.forget_oldest_idle();
            }
        }
    }

    #[cold]
    fn forget_oldest_idle(&mut self) {
        let Some(li) = self.idle.pop_front() else { return };
        let list = &mut self.lists[li as usize];
        list.queued = false;
        if !list.is_empty() {
            return; // its user came back
        }
        let (user, book, next_of_user, prev_of_user) = (list.user, list.book, list.next_of_user, list.prev_of_user);
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

    /// Checks the maps against the chains: every list in use is in its
    /// user's chain exactly once, with consistent back links.
    pub(crate) fn validate(&self) -> Result<(), String> {
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
                if list.is_empty() && !list.queued {
                    return Err(format!("owners: empty list {li} of user {user} is not on the idle queue"));
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
        let queued = self.lists.iter().filter(|list| list.queued).count();
        if queued != self.idle.len() || self.idle.len() > IDLE_MAX {
            return Err(format!("owners: {queued} lists marked idle, {} queued", self.idle.len()));
        }
        Ok(())
    }
}
