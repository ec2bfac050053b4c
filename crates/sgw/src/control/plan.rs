//! Changes to the set of children worked out before they are applied: a
//! reload of the configuration, a scale of an instance group.
//!
//! Planning and applying are two steps so that the guard can class the
//! command by what it does (a reload that removes children is destructive,
//! one that only adds is not) and a dry run can show exactly what would be
//! applied.

use crate::engine::ChildSet;
use crate::model::{ChangePlan, ChildSpec};

/// A planned change: the report, and what applying it needs.
#[derive(Debug, Clone, PartialEq)]
pub struct TreeChange {
    /// What will change, as shown to operators.
    pub plan: ChangePlan,
    /// The specs of `plan.add`, in the same order.
    pub add: Vec<ChildSpec>,
    /// The new specs of `plan.update`, in the same order.
    pub update: Vec<ChildSpec>,
    /// The configuration a reload makes current (what the next reload is
    /// compared with); `None` for a scale.
    pub config: Option<ChildSet>,
}

/// Reads the configuration again for a reload. Implemented by whoever knows
/// where it lives (`sgw serve` reads its `--config` file); the engine only
/// compares and applies.
pub trait ConfigSource: std::fmt::Debug + Send + Sync + 'static {
    /// The children the configuration declares now, and the settings that
    /// changed but only take effect at the next start (`section.key:
    /// why`). An invalid configuration is an error naming file:line:key.
    fn load(&self) -> Result<Reloaded, String>;
}

/// A configuration read again.
#[derive(Debug, Clone)]
pub struct Reloaded {
    pub children: ChildSet,
    pub not_applied: Vec<String>,
}
