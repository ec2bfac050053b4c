//! What a reload or scale changes in the tree, as reported to operators
//! (the dry run's answer, the `change_planned` event).

use serde::{Deserialize, Serialize};

use super::ChildId;

/// A change to the set of children, worked out before anything is done.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangePlan {
    /// Children to add and start, in start order.
    pub add: Vec<ChildId>,
    /// Children whose spec changes.
    pub update: Vec<ChildUpdate>,
    /// Children to stop and forget, dependents first.
    pub remove: Vec<ChildId>,
    /// Children left as they are: same spec, same process.
    pub unchanged: Vec<ChildId>,
    /// Settings that changed but take effect only when sgw restarts
    /// (`section.key: why`). Reported so that nothing is silently ignored.
    pub not_applied: Vec<String>,
}

impl ChangePlan {
    /// Whether applying the plan changes nothing.
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.update.is_empty() && self.remove.is_empty()
    }

    /// One line for logs and command outcomes: `added 1, updated 2 (1
    /// restarted), removed 1, 3 unchanged`.
    pub fn summary(&self) -> String {
        let restarted = self.update.iter().filter(|u| u.restart).count();
        let mut text = format!(
            "added {}, updated {} ({restarted} restarted), removed {}, {} unchanged",
            self.add.len(),
            self.update.len(),
            self.remove.len(),
            self.unchanged.len()
        );
        if !self.not_applied.is_empty() {
            text.push_str(&format!(
                "; {} setting(s) need a restart of sgw",
                self.not_applied.len()
            ));
        }
        text
    }
}

/// One child's spec change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildUpdate {
    pub id: ChildId,
    /// The spec keys that differ (`command`, `env`, `backoff`, ...).
    pub changed: Vec<String>,
    /// Whether the running process must be restarted for the change.
    pub restart: bool,
}
