//! Dependency order: which children start first, which stop first.

use std::collections::HashMap;

use crate::model::{ChildId, ChildSpec, SpecError};

/// Declaration-ordered children whose dependencies exist and form no cycle.
#[derive(Debug, Clone, Default)]
pub struct ChildSet {
    specs: Vec<ChildSpec>,
}

/// A rule broken by the child at `index` (in declaration order).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("child #{}: {error}", index + 1)]
pub struct SetError {
    pub index: usize,
    pub error: SpecError,
}

impl ChildSet {
    pub fn new(specs: Vec<ChildSpec>) -> Result<Self, SetError> {
        let mut index_of = HashMap::new();
        for (index, spec) in specs.iter().enumerate() {
            spec.validate().map_err(|error| SetError { index, error })?;
            if index_of.insert(spec.id.clone(), index).is_some() {
                return Err(SetError {
                    index,
                    error: SpecError::new("id", format!("duplicate child id {}", spec.id)),
                });
            }
        }
        for (index, spec) in specs.iter().enumerate() {
            if let Some(unknown) = spec
                .depends_on
                .iter()
                .find(|dep| !index_of.contains_key(*dep))
            {
                return Err(SetError {
                    index,
                    error: SpecError::new("depends_on", format!("unknown child {unknown}")),
                });
            }
        }
        let order = start_order(&specs);
        if order.len() < specs.len() {
            let index = (0..specs.len())
                .find(|i| !order.contains(i))
                .unwrap_or_default();
            return Err(SetError {
                index,
                error: SpecError::new(
                    "depends_on",
                    format!("dependency cycle through {}", specs[index].id),
                ),
            });
        }
        Ok(Self { specs })
    }

    pub fn specs(&self) -> &[ChildSpec] {
        &self.specs
    }

    pub fn into_specs(self) -> Vec<ChildSpec> {
        self.specs
    }
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
