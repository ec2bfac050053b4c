//! The journal: two sequenced stores, one of lifecycle events and one of
//! captured output lines, that every transport subscribes to. The event
//! ring is also kept on disk (`store`) when the supervisor has a state
//! directory, under an id that says which journal a sequence belongs to.

mod cursor;
mod logs;
mod ring;
pub mod store;
pub(crate) mod writer;

pub use cursor::Cursor;
pub use logs::{LogJournal, LogSubscription};
pub use ring::{Gap, GapReason, Item, Journal, Persist, Record, Restore, Start, Subscription};

use crate::model::Event;

/// Sequenced lifecycle facts.
pub type EventJournal = Journal<Event>;

/// Why a client's resume position was not honoured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetReason {
    /// The position belongs to another journal.
    JournalChanged,
    /// The position is beyond the newest published sequence.
    AfterHead,
}

impl ResetReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ResetReason::JournalChanged => "journal_changed",
            ResetReason::AfterHead => "after_head",
        }
    }
}

/// A resume position that was not honoured: the subscription replays every
/// retained record instead, and the client is told so before anything else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reset {
    pub reason: ResetReason,
    pub requested_journal_id: String,
    pub requested_after: u64,
}

/// Where a subscription resuming `after` a sequence of journal `claimed`
/// starts, on journal `journal_id` whose newest sequence is `last`. One
/// rule for both protocols: a position from another journal, or beyond the
/// head, is answered with a [`Reset`] and a full replay, never silence.
/// An empty `claimed` is not checked (clients that predate journal ids).
pub fn resume(journal_id: &str, last: u64, claimed: &str, after: u64) -> (Start, Option<Reset>) {
    let reason = if !claimed.is_empty() && claimed != journal_id {
        Some(ResetReason::JournalChanged)
    } else if after > last {
        Some(ResetReason::AfterHead)
    } else {
        None
    };
    match reason {
        None => (Start::After(after), None),
        Some(reason) => (
            Start::Oldest,
            Some(Reset {
                reason,
                requested_journal_id: claimed.to_owned(),
                requested_after: after,
            }),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_honours_only_positions_of_this_journal_up_to_the_head() {
        assert_eq!(resume("j1", 10, "j1", 7), (Start::After(7), None));
        assert_eq!(resume("j1", 10, "", 10), (Start::After(10), None));
        let (start, reset) = resume("j1", 10, "j0", 7);
        assert_eq!(start, Start::Oldest);
        assert_eq!(reset.map(|r| r.reason), Some(ResetReason::JournalChanged));
        let (start, reset) = resume("j1", 10, "", 11);
        assert_eq!(start, Start::Oldest);
        assert_eq!(reset.map(|r| r.reason), Some(ResetReason::AfterHead));
    }
}
