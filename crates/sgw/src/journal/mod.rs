//! The journal: two sequenced rings, one of lifecycle events and one of
//! captured output lines, that every transport subscribes to.

mod ring;

pub use ring::{Gap, GapReason, Item, Journal, Record, Start, Subscription};

use crate::model::{Event, LogLine};

/// Sequenced lifecycle facts.
pub type EventJournal = Journal<Event>;
/// Sequenced captured output.
pub type LogJournal = Journal<LogLine>;
