//! The last feed messages sent, and the answer to a MoldUDP64 re-request
//! from them (`docs/PROTOCOL.md`, "Re-request server").

use std::collections::VecDeque;

use matching_proto::feed::{FeedMessage, MoldWriter, Session, mold_control};

/// A bounded window of a session's latest messages.
#[derive(Clone, Debug)]
pub struct FeedWindow {
    session: Session,
    /// The number of `messages[0]`.
    first: u64,
    messages: VecDeque<FeedMessage>,
    capacity: usize,
}

impl FeedWindow {
    /// An empty window of `session` whose next message is `next`, keeping
    /// at most `capacity` messages.
    pub fn new(session: Session, next: u64, capacity: usize) -> FeedWindow {
        FeedWindow { session, first: next, messages: VecDeque::with_capacity(capacity.min(1 << 16)), capacity }
    }

    pub fn session(&self) -> Session {
        self.session
    }

    /// The number the next message gets.
    pub fn next(&self) -> u64 {
        self.first + self.messages.len() as u64
    }

    /// Keeps the message numbered [`FeedWindow::next`], dropping the oldest if full.
    pub fn push(&mut self, message: FeedMessage) {
        if self.capacity == 0 {
            self.first += 1;
            return;
        }
        if self.messages.len() == self.capacity {
            self.messages.pop_front();
            self.first += 1;
        }
        self.messages.push_back(message);
    }

    /// The answer to a re-request of `count` messages from `seq`: the
    /// messages that fit one packet; or a heartbeat naming the oldest
    /// message held (too old, or another session) or the next one (not sent yet).
    pub fn answer(&self, session: Session, seq: u64, count: u16) -> Vec<u8> {
        if session != self.session || seq < self.first {
            return mold_control(self.session, self.first, false).to_vec();
        }
        if seq >= self.next() || count == 0 {
            return mold_control(self.session, self.next(), false).to_vec();
        }
        let mut writer = MoldWriter::new(self.session, seq);
        let mut bytes = Vec::with_capacity(64);
        let start = (seq - self.first) as usize;
        for message in self.messages.iter().skip(start).take(count as usize) {
            bytes.clear();
            message.encode(&mut bytes);
            if !writer.fits(bytes.len()) {
                break;
            }
            writer.push(&bytes);
        }
        writer.bytes().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use matching_proto::feed::{MoldPacket, decode_mold};

    use super::*;

    #[test]
    fn answers_what_it_holds_and_says_where_it_starts_otherwise() {
        let session = *b"TEST000001";
        let mut window = FeedWindow::new(session, 1, 3);
        for order_id in 1..=5 {
            window.push(FeedMessage::OrderDelete { locate: 1, seq: order_id, order_id });
        }
        assert_eq!(window.next(), 6);
        // 1 and 2 fell out: a heartbeat naming 3, the oldest held.
        assert_eq!(decode_mold(&window.answer(session, 2, 5)), Ok(MoldPacket::Heartbeat { session, next: 3 }));
        assert_eq!(decode_mold(&window.answer(*b"OTHER00001", 4, 1)), Ok(MoldPacket::Heartbeat { session, next: 3 }));
        assert_eq!(decode_mold(&window.answer(session, 6, 1)), Ok(MoldPacket::Heartbeat { session, next: 6 }));
        let answer = window.answer(session, 4, 9);
        let Ok(MoldPacket::Messages { seq: 4, messages, .. }) = decode_mold(&answer) else { panic!("{answer:?}") };
        let decoded: Vec<_> = messages.iter().map(|m| FeedMessage::decode(m).unwrap()).collect();
        assert_eq!(decoded, [4, 5].map(|id| FeedMessage::OrderDelete { locate: 1, seq: id, order_id: id }));
    }
}
