//! Planning reloads and scales: pure functions from the running specs and
//! the configurations to a [`TreeChange`], so every rule is testable without
//! processes.
//!
//! The rule of a reload: it applies what changed *in the file*. Children
//! the previous configuration declared and the new one does not are
//! removed; children it declares that do not run are added; running
//! children whose spec differs are updated. Children added at runtime
//! (`AddChild`) are not the file's and are left alone. An instance group
//! keeps its runtime scale unless the file changes its `instances`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use super::topology::{self, ChildSet, instance_of};
use crate::control::{ControlError, TreeChange};
use crate::model::{ChangePlan, ChildId, ChildSpec, ChildUpdate, MAX_INSTANCES};

/// What a reload changes: `running` in registry order, `old` the
/// configuration last applied, `new` the one just read.
pub(super) fn reload(
    running: &[Arc<ChildSpec>],
    old: &ChildSet,
    new: ChildSet,
    not_applied: Vec<String>,
) -> Result<TreeChange, ControlError> {
    let by_id: HashMap<&ChildId, &Arc<ChildSpec>> = running.iter().map(|s| (&s.id, s)).collect();
    let is_instance = |id: &ChildId| {
        instance_of(old.groups(), id).is_some() || instance_of(new.groups(), id).is_some()
    };
    // The children the file is responsible for: what it declared, and
    // every instance of its groups (also those a scale added).
    let managed: HashSet<&ChildId> = old
        .specs()
        .iter()
        .map(|s| &s.id)
        .chain(running.iter().map(|s| &s.id).filter(|id| is_instance(id)))
        .collect();

    let desired = desired_specs(running, old, &new);
    let desired_ids: HashSet<&ChildId> = desired.iter().map(|s| &s.id).collect();
    let mut plan = ChangePlan {
        not_applied,
        ..ChangePlan::default()
    };
    let mut add = Vec::new();
    let mut update = Vec::new();
    for spec in &desired {
        match by_id.get(&spec.id) {
            None => add.push(spec.clone()),
            Some(current) => {
                let changed = current.changed_keys(spec);
                if changed.is_empty() {
                    plan.unchanged.push(spec.id.clone());
                } else {
                    plan.update.push(ChildUpdate {
                        id: spec.id.clone(),
                        restart: ChildSpec::change_needs_restart(&changed),
                        changed,
                    });
                    update.push(spec.clone());
                }
            }
        }
    }
    let removed: Vec<&Arc<ChildSpec>> = running
        .iter()
        .filter(|s| managed.contains(&s.id) && !desired_ids.contains(&s.id))
        .collect();
    // Runtime-added children the file does not know stay as they are.
    plan.unchanged.extend(
        running
            .iter()
            .filter(|s| !managed.contains(&s.id) && !desired_ids.contains(&s.id))
            .map(|s| s.id.clone()),
    );
    finish(running, plan, add, update, &removed, Some(new))
}

/// The children the new configuration wants: its own, with each group's
/// instances as many as run now when the file did not change the group's
/// `instances` (a runtime scale is kept), else as many as it says.
fn desired_specs(running: &[Arc<ChildSpec>], old: &ChildSet, new: &ChildSet) -> Vec<ChildSpec> {
    let mut running_instances: BTreeMap<&ChildId, Vec<u32>> = BTreeMap::new();
    for spec in running {
        if let Some((group, index)) = instance_of(new.groups(), &spec.id) {
            running_instances.entry(group).or_default().push(index);
        }
    }
    let mut desired = Vec::with_capacity(new.specs().len());
    let mut emitted: HashSet<&ChildId> = HashSet::new();
    for spec in new.specs() {
        let Some((group, _)) = instance_of(new.groups(), &spec.id) else {
            desired.push(spec.clone());
            continue;
        };
        if !emitted.insert(group) {
            continue;
        }
        let template = &new.groups()[group];
        let scale_kept = old
            .groups()
            .get(group)
            .is_some_and(|before| before.instances == template.instances);
        let indexes: Vec<u32> = match running_instances.get(group) {
            Some(indexes) if scale_kept => {
                let mut indexes = indexes.clone();
                indexes.sort_unstable();
                indexes
            }
            _ => (0..template.instances.unwrap_or(1)).collect(),
        };
        // The set validated every instance of the file's count; a kept
        // scale's other indexes are named the same way.
        desired.extend(
            indexes
                .into_iter()
                .filter_map(|k| template.instance(k).ok()),
        );
    }
    desired
}

/// What a scale of `group` to `instances` changes.
pub(super) fn scale(
    running: &[Arc<ChildSpec>],
    config: &ChildSet,
    group: &ChildId,
    instances: u32,
) -> Result<TreeChange, ControlError> {
    let Some(template) = config.groups().get(group) else {
        return Err(if running.iter().any(|s| &s.id == group) {
            ControlError::InvalidArgument {
                field: "child_id".to_owned(),
                message: format!(
                    "{group} is not an instance group: only a [[child]] with instances = N can be scaled"
                ),
            }
        } else {
            ControlError::NotFound {
                id: group.to_string(),
                known: config.groups().keys().cloned().collect(),
            }
        });
    };
    if !(1..=MAX_INSTANCES).contains(&instances) {
        return Err(ControlError::InvalidArgument {
            field: "instances".to_owned(),
            message: format!("must be between 1 and {MAX_INSTANCES} (got {instances})"),
        });
    }
    let mut plan = ChangePlan::default();
    let mut present = HashSet::new();
    let mut removed = Vec::new();
    for spec in running {
        match instance_of(config.groups(), &spec.id) {
            Some((g, index)) if g == group => {
                present.insert(index);
                if index < instances {
                    plan.unchanged.push(spec.id.clone());
                } else {
                    removed.push(spec);
                }
            }
            _ => plan.unchanged.push(spec.id.clone()),
        }
    }
    let add = (0..instances)
        .filter(|k| !present.contains(k))
        .map(|k| template.instance(k).map_err(ControlError::InvalidSpec))
        .collect::<Result<Vec<_>, _>>()?;
    finish(running, plan, add, Vec::new(), &removed, None)
}

/// Checks that the tree after the change is valid (dependencies exist, no
/// cycle, nothing depends on a removed child) and orders the steps: adds
/// in start order, removals dependents first.
fn finish(
    running: &[Arc<ChildSpec>],
    mut plan: ChangePlan,
    add: Vec<ChildSpec>,
    update: Vec<ChildSpec>,
    removed: &[&Arc<ChildSpec>],
    config: Option<ChildSet>,
) -> Result<TreeChange, ControlError> {
    let removed_ids: HashSet<&ChildId> = removed.iter().map(|s| &s.id).collect();
    let updated: HashMap<&ChildId, &ChildSpec> = update.iter().map(|s| (&s.id, s)).collect();
    let after: Vec<ChildSpec> = running
        .iter()
        .filter(|s| !removed_ids.contains(&s.id))
        .map(|s| {
            updated
                .get(&s.id)
                .map_or_else(|| (**s).clone(), |u| (*u).clone())
        })
        .chain(add.iter().cloned())
        .collect();
    for gone in removed {
        let dependents: Vec<ChildId> = after
            .iter()
            .filter(|s| s.depends_on.contains(&gone.id))
            .map(|s| s.id.clone())
            .collect();
        if !dependents.is_empty() {
            return Err(ControlError::HasDependents {
                id: gone.id.clone(),
                dependents,
            });
        }
    }
    ChildSet::new(after.clone()).map_err(|error| {
        let id = after
            .get(error.index)
            .map_or_else(String::new, |s| s.id.to_string());
        ControlError::InvalidConfig {
            message: format!("after the change, {id}: {}", error.error),
        }
    })?;
    let mut add_ordered = Vec::with_capacity(add.len());
    let order = topology::start_order(&after);
    for index in order {
        if let Some(spec) = add.iter().find(|s| s.id == after[index].id) {
            add_ordered.push(spec.clone());
        }
    }
    let removed_specs: Vec<ChildSpec> = removed.iter().map(|s| (***s).clone()).collect();
    plan.remove = topology::stop_levels(&removed_specs)
        .into_iter()
        .flatten()
        .collect();
    plan.add = add_ordered.iter().map(|s| s.id.clone()).collect();
    Ok(TreeChange {
        plan,
        add: add_ordered,
        update,
        config,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(id: &str, command: &str) -> ChildSpec {
        ChildSpec::new(
            ChildId::new(id).expect("id"),
            vec![command.to_owned(), "{instance}".to_owned()],
        )
    }

    fn group(id: &str, n: u32) -> ChildSpec {
        let mut spec = spec(id, "worker");
        spec.instances = Some(n);
        spec
    }

    fn set(specs: Vec<ChildSpec>) -> ChildSet {
        ChildSet::new(specs).expect("valid set")
    }

    fn running(set: &ChildSet) -> Vec<Arc<ChildSpec>> {
        set.specs().iter().cloned().map(Arc::new).collect()
    }

    fn ids(ids: &[ChildId]) -> Vec<&str> {
        ids.iter().map(ChildId::as_str).collect()
    }

    #[test]
    fn a_reload_adds_removes_and_updates_only_what_the_file_changed() {
        let old = set(vec![spec("a", "x"), spec("b", "x"), spec("c", "x")]);
        let mut b = spec("b", "y");
        b.tags = vec!["new".to_owned()];
        let mut c = spec("c", "x");
        c.backoff.initial = std::time::Duration::from_secs(1);
        let new = set(vec![spec("a", "x"), b, c, spec("d", "x")]);
        let mut live = running(&old);
        // Added at runtime: not the file's.
        live.push(Arc::new(spec("extra", "x")));
        let change = reload(&live, &old, set(vec![]), vec![]).expect("plan");
        assert_eq!(ids(&change.plan.remove), ["a", "b", "c"]);
        assert_eq!(ids(&change.plan.unchanged), ["extra"]);

        let change = reload(&live, &old, new, vec![]).expect("plan");
        assert_eq!(ids(&change.plan.add), ["d"]);
        assert_eq!(ids(&change.plan.unchanged), ["a", "extra"]);
        assert!(change.plan.remove.is_empty());
        let updates: Vec<_> = change
            .plan
            .update
            .iter()
            .map(|u| (u.id.as_str(), u.changed.clone(), u.restart))
            .collect();
        assert_eq!(
            updates,
            [
                ("b", vec!["command".to_owned(), "tags".to_owned()], true),
                ("c", vec!["backoff".to_owned()], false),
            ]
        );
    }

    #[test]
    fn a_reload_keeps_a_runtime_scale_unless_the_file_changes_instances() {
        let old = set(vec![group("w", 2)]);
        let mut live = running(&old);
        live.push(Arc::new(group("w", 2).instance(2).expect("instance")));
        let same = reload(&live, &old, set(vec![group("w", 2)]), vec![]).expect("plan");
        assert!(same.plan.is_empty(), "{:?}", same.plan);
        assert_eq!(ids(&same.plan.unchanged), ["w-0", "w-1", "w-2"]);

        let fewer = reload(&live, &old, set(vec![group("w", 1)]), vec![]).expect("plan");
        assert_eq!(ids(&fewer.plan.remove), ["w-1", "w-2"]);

        let mut changed = group("w", 2);
        changed.command[0] = "other".to_owned();
        let updated = reload(&live, &old, set(vec![changed]), vec![]).expect("plan");
        assert_eq!(updated.plan.update.len(), 3, "{:?}", updated.plan);
        assert_eq!(updated.update[2].command, ["other", "2"]);
    }

    #[test]
    fn a_reload_refuses_to_remove_what_a_runtime_child_depends_on() {
        let old = set(vec![spec("db", "x")]);
        let mut live = running(&old);
        let mut app = spec("app", "x");
        app.depends_on = vec![ChildId::new("db").expect("id")];
        live.push(Arc::new(app));
        let error = reload(&live, &old, set(vec![]), vec![]).expect_err("dependents");
        assert!(
            matches!(&error, ControlError::HasDependents { id, .. } if id.as_str() == "db"),
            "{error:?}"
        );
    }

    #[test]
    fn a_scale_adds_missing_and_removes_the_highest_instances() {
        let config = set(vec![group("w", 3), spec("solo", "x")]);
        let live = running(&config);
        let up = scale(&live, &config, &ChildId::new("w").expect("id"), 5).expect("plan");
        assert_eq!(ids(&up.plan.add), ["w-3", "w-4"]);
        assert_eq!(up.add[1].command, ["worker", "4"]);
        assert!(up.plan.remove.is_empty());
        let down = scale(&live, &config, &ChildId::new("w").expect("id"), 1).expect("plan");
        assert_eq!(ids(&down.plan.remove), ["w-1", "w-2"]);
        assert!(down.plan.add.is_empty());
        let solo = scale(&live, &config, &ChildId::new("solo").expect("id"), 2);
        assert!(
            matches!(solo, Err(ControlError::InvalidArgument { .. })),
            "{solo:?}"
        );
        let zero = scale(&live, &config, &ChildId::new("w").expect("id"), 0);
        assert!(
            matches!(zero, Err(ControlError::InvalidArgument { .. })),
            "{zero:?}"
        );
    }
}
