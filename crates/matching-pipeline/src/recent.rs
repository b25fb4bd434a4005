//! The last items of a stream in `seq` order, within a bound, and the `seq`
//! after which none is missing: what a client can still be replayed.

use std::collections::VecDeque;

use matching_core::Seq;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recent<T> {
    items: VecDeque<(Seq, T)>,
    capacity: usize,
    complete_after: Seq,
}

impl<T> Recent<T> {
    /// Empty, keeping at most `capacity` items; nothing after `complete_after` is missing.
    pub fn new(capacity: usize, complete_after: Seq) -> Recent<T> {
        Recent { items: VecDeque::with_capacity(capacity.min(1 << 16)), capacity, complete_after }
    }

    /// Keeps `item` of `seq` (not below the last one's), dropping the oldest if full.
    pub fn push(&mut self, seq: Seq, item: T) {
        debug_assert!(self.items.back().is_none_or(|(last, _)| *last <= seq), "Invariant: items come in seq order");
        if self.capacity == 0 {
            self.complete_after = seq;
            return;
        }
        if self.items.len() == self.capacity
            && let Some((dropped, _)) = self.items.pop_front()
        {
            self.complete_after = self.complete_after.max(dropped);
        }
        self.items.push_back((seq, item));
    }

    /// Every item with a larger `seq` than this is kept.
    pub fn complete_after(&self) -> Seq {
        self.complete_after
    }

    /// The items with a `seq` above `after`, in order.
    pub fn after(&self, after: Seq) -> impl Iterator<Item = &(Seq, T)> {
        let from = self.items.partition_point(|(seq, _)| *seq <= after);
        self.items.range(from..)
    }

    /// Every item kept, in order.
    pub fn iter(&self) -> impl Iterator<Item = &(Seq, T)> {
        self.items.iter()
    }
}

impl<T> Default for Recent<T> {
    fn default() -> Recent<T> {
        Recent::new(0, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_items_and_says_from_where() {
        let mut recent = Recent::new(3, 10);
        for seq in 11..=15 {
            recent.push(seq, seq * 2);
        }
        assert_eq!(recent.complete_after(), 12);
        assert_eq!(recent.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(), vec![13, 14, 15]);
        assert_eq!(recent.after(13).map(|(_, item)| *item).collect::<Vec<_>>(), vec![28, 30]);
        let mut none = Recent::new(0, 0);
        none.push(7, ());
        assert_eq!((none.complete_after(), none.iter().count()), (7, 0));
    }
}
