//! What a stream needs from a journal subscription, whichever journal it
//! reads: the event ring hands out [`Subscription`]s, the log journal
//! [`LogSubscription`]s, and a transport serves both with one loop.

use std::future::Future;

use super::logs::LogSubscription;
use super::ring::{Item, Subscription};
use crate::model::LogLine;

/// A position in a journal that yields records and in-band gaps.
pub trait Cursor<T>: Send {
    /// The next item if one is available now.
    fn try_next(&mut self) -> Option<Item<T>>;

    /// The next item, waiting for a publish if needed; `None` once the
    /// journal is closed and drained.
    fn next(&mut self) -> impl Future<Output = Option<Item<T>>> + Send;
}

impl<T: Send + Sync> Cursor<T> for Subscription<T> {
    fn try_next(&mut self) -> Option<Item<T>> {
        Subscription::try_next(self)
    }

    fn next(&mut self) -> impl Future<Output = Option<Item<T>>> + Send {
        Subscription::next(self)
    }
}

impl Cursor<LogLine> for LogSubscription {
    fn try_next(&mut self) -> Option<Item<LogLine>> {
        LogSubscription::try_next(self)
    }

    fn next(&mut self) -> impl Future<Output = Option<Item<LogLine>>> + Send {
        LogSubscription::next(self)
    }
}
