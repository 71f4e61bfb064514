//! Messages waiting for a saturated channel. They are never dropped: when the
//! channel has room again they leave merged into digests (see
//! [`template::digest`](super::template::digest)), each as large as the provider
//! allows, until the queue is empty.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};

use super::{template, Message, Recipients};

/// A queued message with the people it is for and the channels to try if the
/// digest carrying it is refused for good.
#[derive(Debug, Clone)]
pub struct Pending {
    pub message: Message,
    pub recipients: Recipients,
    pub fallbacks: Vec<String>,
    pub queued_at: DateTime<Utc>,
}

#[derive(Debug, Default)]
pub struct DigestQueue {
    items: VecDeque<Pending>,
}

impl DigestQueue {
    pub fn push(&mut self, p: Pending) {
        self.items.push_back(p);
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn oldest_at(&self) -> Option<DateTime<Utc>> {
        self.items.front().map(|p| p.queued_at)
    }

    /// Takes the oldest messages that fit in one digest of `max_bytes`: the digest,
    /// everyone any of them was for, and the entries themselves (to re-queue or
    /// re-route if the digest is refused).
    pub fn take_digest(
        &mut self,
        max_bytes: Option<usize>,
    ) -> Option<(Message, Recipients, Vec<Pending>)> {
        if self.items.is_empty() {
            return None;
        }
        let msgs: Vec<Message> = self.items.iter().map(|p| p.message.clone()).collect();
        let (digest, n) = template::digest(&msgs, max_bytes, None);
        let taken: Vec<Pending> = self.items.drain(..n).collect();
        let mut to = Recipients::default();
        for p in &taken {
            to.merge(&p.recipients);
        }
        Some((digest, to, taken))
    }

    /// Puts entries back at the front, in their order (a digest that could not go).
    pub fn requeue_front(&mut self, entries: Vec<Pending>) {
        for p in entries.into_iter().rev() {
            self.items.push_front(p);
        }
    }
}
