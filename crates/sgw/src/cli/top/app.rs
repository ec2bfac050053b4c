//! What the dashboard knows: the last `GetState`, the recent events, the
//! selected child's log tail and what the last command did. Pure state,
//! changed only by the main loop, so it is tested without a terminal.

use std::collections::VecDeque;

use crate::pb;

/// Events kept for the events pane: more than any terminal shows, few
/// enough that a replayed backlog costs nothing.
pub const EVENTS_KEPT: usize = 200;
/// Log lines kept for the log pane (also how many the tail asks for).
pub const LOG_LINES_KEPT: usize = 200;

/// Whether the feed currently has a live connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    Connected,
    /// Why it was lost; the feed keeps retrying.
    Disconnected(String),
}

/// The dashboard's state.
#[derive(Debug)]
pub struct App {
    /// Shown in the header, so two dashboards on two servers are told apart.
    pub socket: String,
    pub link: Link,
    /// Children in the server's declaration order.
    pub children: Vec<pb::ChildRecord>,
    /// Kept by id, not by index: a child added or removed above it does not
    /// move the selection to another child.
    pub selected: Option<String>,
    pub events: VecDeque<pb::Event>,
    /// The newest event sequence seen (from the stream or a snapshot).
    pub last_event_sequence: u64,
    /// The selected child's recent output, oldest first.
    pub logs: VecDeque<pb::LogLine>,
    /// The outcome or error of the last command, or a notice.
    pub status: String,
}

impl App {
    pub fn new(socket: String, state: pb::GetStateResponse) -> Self {
        let mut app = App {
            socket,
            link: Link::Connected,
            children: Vec::new(),
            selected: None,
            events: VecDeque::new(),
            last_event_sequence: 0,
            logs: VecDeque::new(),
            status: String::new(),
        };
        app.apply_state(state);
        app
    }

    /// Replaces the table with a snapshot; returns whether the selection
    /// changed (the log tail must then follow another child).
    pub fn apply_state(&mut self, state: pb::GetStateResponse) -> bool {
        self.last_event_sequence = self.last_event_sequence.max(state.last_event_sequence);
        let index = self.selected_index();
        self.children = state.children;
        self.reselect(index)
    }

    /// A command's result carries the child's new record: shown at once,
    /// before the next snapshot.
    pub fn apply_record(&mut self, record: pb::ChildRecord) {
        if let Some(slot) = self
            .children
            .iter_mut()
            .find(|c| c.child_id == record.child_id)
        {
            *slot = record;
        }
    }

    pub fn push_event(&mut self, event: pb::Event) {
        self.last_event_sequence = self.last_event_sequence.max(event.sequence);
        if self.events.len() == EVENTS_KEPT {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    pub fn push_log(&mut self, line: pb::LogLine) {
        if self.logs.len() == LOG_LINES_KEPT {
            self.logs.pop_front();
        }
        self.logs.push_back(line);
    }

    pub fn selected_index(&self) -> Option<usize> {
        let id = self.selected.as_deref()?;
        self.children.iter().position(|c| c.child_id == id)
    }

    /// Moves the selection by `delta` rows (clamped); returns whether it
    /// changed.
    pub fn move_selection(&mut self, delta: isize) -> bool {
        if self.children.is_empty() {
            return false;
        }
        let last = self.children.len() - 1;
        let target = match self.selected_index() {
            Some(index) => index.saturating_add_signed(delta).min(last),
            None => 0,
        };
        self.select(target)
    }

    /// Keeps the selected id when it still exists; otherwise selects the
    /// row that took its place (`previous` index), or the first.
    fn reselect(&mut self, previous: Option<usize>) -> bool {
        if self.selected_index().is_some() {
            return false;
        }
        if self.children.is_empty() {
            let changed = self.selected.is_some();
            self.selected = None;
            return changed;
        }
        let index = previous.unwrap_or(0).min(self.children.len() - 1);
        self.select(index)
    }

    fn select(&mut self, index: usize) -> bool {
        let id = self.children.get(index).map(|c| c.child_id.clone());
        if id == self.selected {
            return false;
        }
        self.selected = id;
        self.logs.clear();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> pb::ChildRecord {
        pb::ChildRecord {
            child_id: id.to_owned(),
            ..Default::default()
        }
    }

    fn state(ids: &[&str]) -> pb::GetStateResponse {
        pb::GetStateResponse {
            children: ids.iter().map(|id| record(id)).collect(),
            ..Default::default()
        }
    }

    /// The first child is selected at start, and moves are clamped to
    /// the table.
    #[test]
    fn selection_starts_first_and_is_clamped() {
        let mut app = App::new("s".into(), state(&["a", "b", "c"]));
        assert_eq!(app.selected.as_deref(), Some("a"));
        assert!(!app.move_selection(-1));
        assert!(app.move_selection(1));
        assert!(app.move_selection(5));
        assert_eq!(app.selected.as_deref(), Some("c"));
        assert!(!app.move_selection(1));
    }

    /// A snapshot keeps the selected child by id, even when it moved; a
    /// removed child hands the selection to the row that took its place,
    /// and the old child's log lines are dropped.
    #[test]
    fn snapshots_keep_the_selection_by_id() {
        let mut app = App::new("s".into(), state(&["a", "b", "c"]));
        app.move_selection(1);
        app.push_log(pb::LogLine {
            child_id: "b".into(),
            ..Default::default()
        });
        assert!(!app.apply_state(state(&["z", "a", "b", "c"])));
        assert_eq!(app.selected.as_deref(), Some("b"));
        assert_eq!(app.logs.len(), 1);
        assert!(app.apply_state(state(&["z", "a", "c"])));
        assert_eq!(app.selected.as_deref(), Some("c"));
        assert!(app.logs.is_empty());
        assert!(app.apply_state(state(&[])));
        assert_eq!(app.selected, None);
    }

    /// The events pane keeps a bounded window of the newest events.
    #[test]
    fn events_are_bounded() {
        let mut app = App::new("s".into(), state(&["a"]));
        for sequence in 1..=(EVENTS_KEPT as u64 + 5) {
            app.push_event(pb::Event {
                sequence,
                ..Default::default()
            });
        }
        assert_eq!(app.events.len(), EVENTS_KEPT);
        assert_eq!(app.events.front().map(|e| e.sequence), Some(6));
        assert_eq!(app.last_event_sequence, EVENTS_KEPT as u64 + 5);
    }
}
