//! `sgw add FILE`: a TOML file holding one child, either as one `[[child]]`
//! table copied from a config or as the child's keys at the top level. It
//! is read with the config's own `ChildSpec` deserialization (unknown keys
//! are errors), and every problem names the file, line and key (exit 2).

use std::ops::Range;
use std::path::Path;

use serde::Deserialize;

use super::CliError;
use crate::model::ChildSpec;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wrapped {
    child: Vec<toml::Spanned<ChildSpec>>,
}

pub fn load(path: &Path) -> Result<ChildSpec, CliError> {
    let source = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|error| CliError::Usage(format!("{source}: cannot read the file: {error}")))?;
    parse(&text, &source)
}

pub fn parse(text: &str, source: &str) -> Result<ChildSpec, CliError> {
    let at = |span: Option<Range<usize>>, message: &str| {
        CliError::Usage(match span {
            Some(span) => {
                let (line, column) = line_column(text, span.start);
                format!("{source}:{line}:{column}: {message}")
            }
            None => format!("{source}: {message}"),
        })
    };
    let toml_error = |error: toml::de::Error| at(error.span(), error.message().trim());
    let table: toml::Table = toml::from_str(text).map_err(toml_error)?;
    let (spec, span) = if table.contains_key("child") {
        let mut wrapped: Wrapped = toml::from_str(text).map_err(toml_error)?;
        if wrapped.child.len() != 1 {
            return Err(at(
                wrapped.child.get(1).map(toml::Spanned::span),
                &format!(
                    "expected exactly one [[child]] table, found {}",
                    wrapped.child.len()
                ),
            ));
        }
        let spanned = wrapped.child.remove(0);
        let span = spanned.span();
        (spanned.into_inner(), Some(span))
    } else {
        (toml::from_str::<ChildSpec>(text).map_err(toml_error)?, None)
    };
    spec.validate().map_err(|error| {
        at(
            span.clone(),
            &format!(
                "[[child]] {:?}: {}: {}",
                spec.id.as_str(),
                error.field,
                error.message
            ),
        )
    })?;
    // AddChild carries one child; a group belongs in the config file.
    if spec.instances.is_some() {
        return Err(at(
            span,
            &format!(
                "[[child]] {:?}: instances: `sgw add` adds one child; declare an instance group in the config file (then `sgw reload`, `sgw scale`)",
                spec.id.as_str()
            ),
        ));
    }
    Ok(spec)
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(result: Result<ChildSpec, CliError>) -> String {
        match result {
            Err(CliError::Usage(message)) => message,
            other => panic!("expected a usage error, got {other:?}"),
        }
    }

    #[test]
    fn accepts_a_child_table_or_top_level_keys() {
        let wrapped = parse(
            "[[child]]\nid = \"web\"\ncommand = [\"sleep\", \"9\"]\n",
            "a.toml",
        )
        .expect("wrapped");
        let bare = parse("id = \"web\"\ncommand = [\"sleep\", \"9\"]\n", "b.toml").expect("bare");
        assert_eq!(wrapped, bare);
        assert_eq!(bare.id.as_str(), "web");
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let message = usage(parse(
            "[[child]]\nid = \"web\"\ncommand = [\"true\"]\nrestrat = \"always\"\n",
            "web.toml",
        ));
        assert!(message.starts_with("web.toml:4:"), "{message}");
        assert!(message.contains("restrat"), "{message}");
        let message = usage(parse(
            "[[child]]\nid = \"a\"\ncommand = [\"true\"]\n[[child]]\nid = \"b\"\ncommand = [\"true\"]\n",
            "two.toml",
        ));
        assert!(message.starts_with("two.toml:4:"), "{message}");
        let message = usage(parse("id = \"a\"\ncommand = []\n", "empty.toml"));
        assert!(
            message.contains("command: must name a program"),
            "{message}"
        );
    }
}
