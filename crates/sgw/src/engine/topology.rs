//! Dependency order: which children start first, which stop first.

use std::collections::{BTreeMap, HashMap};

use crate::model::{ChildId, ChildSpec, SpecError};

/// Declaration-ordered children whose dependencies exist and form no cycle,
/// with `instances = N` tables expanded to their instances.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChildSet {
    specs: Vec<ChildSpec>,
    /// The `instances = N` tables by id (the group), kept as written: a
    /// scale makes more instances from them.
    groups: BTreeMap<ChildId, ChildSpec>,
}

/// A rule broken by the child at `index` (in declaration order).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("child #{}: {error}", index + 1)]
pub struct SetError {
    pub index: usize,
    pub error: SpecError,
}

/// Something legal but probably not meant, at the child at `index`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetWarning {
    pub index: usize,
    pub warning: SpecError,
}

impl ChildSet {
    /// Validates and expands `specs` (declaration order). Error indexes
    /// are those of `specs`: an instance's problem is its table's.
    pub fn new(specs: Vec<ChildSpec>) -> Result<Self, SetError> {
        let mut expanded = Vec::with_capacity(specs.len());
        // For each expanded spec, the index of the table it came from.
        let mut origin = Vec::with_capacity(specs.len());
        let mut from_group = Vec::with_capacity(specs.len());
        let mut groups = BTreeMap::new();
        for (index, spec) in specs.into_iter().enumerate() {
            spec.validate().map_err(|error| SetError { index, error })?;
            match spec.instances {
                None => {
                    expanded.push(spec);
                    origin.push(index);
                    from_group.push(false);
                }
                Some(count) => {
                    for k in 0..count {
                        expanded.push(
                            spec.instance(k)
                                .map_err(|error| SetError { index, error })?,
                        );
                        origin.push(index);
                        from_group.push(true);
                    }
                    groups.insert(spec.id.clone(), spec);
                }
            }
        }
        let at = |i: usize, error: SpecError| SetError {
            index: origin.get(i).copied().unwrap_or(i),
            error,
        };
        let mut index_of = HashMap::new();
        for (index, spec) in expanded.iter().enumerate() {
            if index_of.insert(spec.id.clone(), index).is_some() {
                return Err(at(
                    index,
                    SpecError::new("id", format!("duplicate child id {}", spec.id)),
                ));
            }
            if !from_group[index] && groups.contains_key(&spec.id) {
                return Err(at(
                    index,
                    SpecError::new(
                        "id",
                        format!("{} is also the id of an instance group", spec.id),
                    ),
                ));
            }
            if !from_group[index]
                && let Some(group) = group_of(&groups, &spec.id)
            {
                return Err(at(
                    index,
                    SpecError::new(
                        "id",
                        format!(
                            "{} is named like an instance of {group} (which has instances = N)",
                            spec.id
                        ),
                    ),
                ));
            }
        }
        for (index, spec) in expanded.iter().enumerate() {
            if let Some(unknown) = spec
                .depends_on
                .iter()
                .find(|dep| !index_of.contains_key(*dep))
            {
                let message = if groups.contains_key(unknown) {
                    format!(
                        "{unknown} is an instance group: depend on its instances ({unknown}-0, ...)"
                    )
                } else {
                    format!("unknown child {unknown}")
                };
                return Err(at(index, SpecError::new("depends_on", message)));
            }
        }
        let order = start_order(&expanded);
        if order.len() < expanded.len() {
            let index = (0..expanded.len())
                .find(|i| !order.contains(i))
                .unwrap_or_default();
            let id = expanded[index].id.clone();
            return Err(at(
                index,
                SpecError::new("depends_on", format!("dependency cycle through {id}")),
            ));
        }
        Ok(Self {
            specs: expanded,
            groups,
        })
    }

    /// The same children with `groups` as their instance templates (the
    /// config's, for a tree whose instances were restored at start).
    pub fn with_groups(mut self, groups: BTreeMap<ChildId, ChildSpec>) -> Self {
        self.groups = groups;
        self
    }

    /// The `instances = N` tables, by group id.
    pub fn groups(&self) -> &BTreeMap<ChildId, ChildSpec> {
        &self.groups
    }

    pub fn specs(&self) -> &[ChildSpec] {
        &self.specs
    }

    /// Dependencies on `autostart = false` children: the dependent waits
    /// until someone resumes or restarts them, and is BLOCKED after its
    /// `start_timeout`.
    pub fn warnings(&self) -> Vec<SetWarning> {
        let mut warnings = Vec::new();
        for (index, spec) in self.specs.iter().enumerate() {
            for dep in &spec.depends_on {
                if self.specs.iter().any(|s| &s.id == dep && !s.autostart) {
                    warnings.push(SetWarning {
                        index,
                        warning: SpecError::new(
                            "depends_on",
                            format!(
                                "{dep} has autostart = false: {} waits until {dep} is resumed or restarted (and is reported blocked after start_timeout {})",
                                spec.id,
                                humantime::format_duration(spec.start_timeout)
                            ),
                        ),
                    });
                }
            }
        }
        warnings
    }

    pub fn into_specs(self) -> Vec<ChildSpec> {
        self.specs
    }
}

/// The group `id` is an instance of (`worker` for `worker-3`), if any.
pub fn group_of<'a, T>(groups: &'a BTreeMap<ChildId, T>, id: &ChildId) -> Option<&'a ChildId> {
    instance_of(groups, id).map(|(group, _)| group)
}

/// The group and index of instance `id` (`worker`, 3 for `worker-3`).
pub fn instance_of<'a, T>(
    groups: &'a BTreeMap<ChildId, T>,
    id: &ChildId,
) -> Option<(&'a ChildId, u32)> {
    let (prefix, number) = id.as_str().rsplit_once('-')?;
    // `worker-03` is not instance 3: only the canonical spelling counts.
    if number.is_empty() || (number.len() > 1 && number.starts_with('0')) {
        return None;
    }
    let index = number.parse().ok()?;
    let prefix = ChildId::new(prefix).ok()?;
    groups
        .get_key_value(&prefix)
        .map(|(group, _)| (group, index))
}

/// Indexes of `specs` in an order where every child comes after its
/// dependencies, ties broken by declaration order. Children on a cycle are
/// left out.
pub fn start_order(specs: &[ChildSpec]) -> Vec<usize> {
    let index_of: HashMap<&ChildId, usize> =
        specs.iter().enumerate().map(|(i, s)| (&s.id, i)).collect();
    let mut placed = vec![false; specs.len()];
    let mut order = Vec::with_capacity(specs.len());
    // Quadratic, and fine: trees are tens of children, and stable
    // declaration-order tie breaking matters more than asymptotics.
    loop {
        let next = (0..specs.len()).find(|&i| {
            !placed[i]
                && specs[i]
                    .depends_on
                    .iter()
                    .all(|dep| index_of.get(dep).is_none_or(|&d| placed[d]))
        });
        match next {
            Some(i) => {
                placed[i] = true;
                order.push(i);
            }
            None => return order,
        }
    }
}

/// The ids of `specs` grouped for stopping: level 0 holds the children no
/// other child depends on; each later level holds those whose dependents
/// are all in earlier levels. Within a level, declaration order.
pub fn stop_levels(specs: &[ChildSpec]) -> Vec<Vec<ChildId>> {
    let mut level = vec![0usize; specs.len()];
    // Dependents come after their dependencies in start order, so walking
    // it backwards settles every dependent's level before its dependencies'.
    for &i in start_order(specs).iter().rev() {
        for dep in &specs[i].depends_on {
            if let Some(j) = specs.iter().position(|s| &s.id == dep) {
                level[j] = level[j].max(level[i] + 1);
            }
        }
    }
    let depth = level.iter().max().map_or(0, |max| max + 1);
    let mut levels = vec![Vec::new(); depth];
    for (spec, &l) in specs.iter().zip(&level) {
        levels[l].push(spec.id.clone());
    }
    levels
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(id: &str, deps: &[&str]) -> ChildSpec {
        let mut spec = ChildSpec::new(ChildId::new(id).expect("id"), vec!["true".into()]);
        spec.depends_on = deps.iter().map(|d| ChildId::new(d).expect("id")).collect();
        spec
    }

    #[test]
    fn orders_dependencies_first_and_keeps_declaration_order() {
        let specs = vec![spec("web", &["db"]), spec("db", &[]), spec("cron", &[])];
        let order: Vec<_> = start_order(&specs)
            .into_iter()
            .map(|i| specs[i].id.to_string())
            .collect();
        assert_eq!(order, ["db", "web", "cron"]);
    }

    /// Dependents stop in an earlier level than everything they depend on;
    /// independent children share a level.
    #[test]
    fn stop_levels_put_dependents_first() {
        let specs = vec![
            spec("db", &[]),
            spec("cache", &[]),
            spec("api", &["db", "cache"]),
            spec("web", &["api"]),
            spec("batch", &["db"]),
            spec("solo", &[]),
        ];
        let ids = |names: &[&str]| -> Vec<ChildId> {
            names.iter().map(|n| ChildId::new(n).expect("id")).collect()
        };
        assert_eq!(
            stop_levels(&specs),
            vec![
                ids(&["web", "batch", "solo"]),
                ids(&["api"]),
                ids(&["db", "cache"]),
            ]
        );
        assert!(stop_levels(&[]).is_empty());
    }

    #[test]
    fn warns_about_dependencies_that_do_not_start_by_themselves() {
        let mut db = spec("db", &[]);
        db.autostart = false;
        let set = ChildSet::new(vec![db, spec("web", &["db"]), spec("cron", &[])]).expect("set");
        let warnings = set.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0].index, 1);
        assert_eq!(warnings[0].warning.field, "depends_on");
        assert!(
            warnings[0]
                .warning
                .message
                .contains("db has autostart = false"),
            "{warnings:?}"
        );
    }

    #[test]
    fn rejects_cycles_unknown_and_duplicate_ids() {
        let cycle = ChildSet::new(vec![spec("a", &["b"]), spec("b", &["a"])]).expect_err("cycle");
        assert!(cycle.error.message.contains("cycle"), "{cycle:?}");
        let unknown = ChildSet::new(vec![spec("a", &["nope"])]).expect_err("unknown");
        assert_eq!(
            (unknown.index, unknown.error.field.as_str()),
            (0, "depends_on")
        );
        let dup = ChildSet::new(vec![spec("a", &[]), spec("a", &[])]).expect_err("dup");
        assert_eq!((dup.index, dup.error.field.as_str()), (1, "id"));
    }
}
