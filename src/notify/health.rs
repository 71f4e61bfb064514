//! Which channels can send, and why not.
//!
//! A channel whose secret file is missing or whose environment variable is unset
//! cannot be built. That must never stop alerting: the alert is still opened, on
//! the board and in the record, and its route moves on to its next channel. The
//! broken channel is *unavailable*: every attempt over it is recorded as a
//! permanent failure naming the cause, `/metrics` exports
//! `pollwatch_channel_up{channel}`, and the console shows a banner naming it. A
//! reload that fixes the file rebuilds the notifier and the channel is up again.
//!
//! [`HealthBoard`] is the handle the alerts task writes to whenever it builds a
//! notifier, and the console and metrics read from — they never see the notifier.

use std::sync::{Arc, RwLock};

/// The attempt code recorded for a channel that is unavailable.
pub const UNAVAILABLE: &str = "channel-unavailable";

/// One channel's state as the last built notifier found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelHealth {
    pub channel: String,
    /// Why the channel cannot send; `None` when it was built.
    pub down: Option<String>,
}

impl ChannelHealth {
    pub fn up(&self) -> bool {
        self.down.is_none()
    }
}

/// Shared, cheap to clone; empty until alerting has built its channels.
#[derive(Debug, Clone, Default)]
pub struct HealthBoard(Arc<RwLock<Vec<ChannelHealth>>>);

impl HealthBoard {
    pub fn set(&self, health: Vec<ChannelHealth>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = health;
    }

    pub fn get(&self) -> Vec<ChannelHealth> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The channels that cannot send, with the cause.
    pub fn down(&self) -> Vec<ChannelHealth> {
        self.get().into_iter().filter(|c| !c.up()).collect()
    }
}
