//! A YAML text's nesting, checked before any YAML parser sees it: a parser
//! cannot be interrupted, and a few hundred kilobytes of nested brackets
//! (`[[[[…`) cost minutes of CPU in one. Real specs and locks nest a
//! handful of levels.

/// The deepest nesting of flow collections (`[` `{`) a YAML input may have.
pub(crate) const MAX_FLOW_DEPTH: usize = 64;

/// The line (1-based) where flow collections first nest deeper than
/// [`MAX_FLOW_DEPTH`], if they do. Brackets in quoted scalars and comments
/// do not count.
pub(crate) fn too_deep(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut line = 1;
    let mut quote: Option<char> = None;
    let mut comment = false;
    let mut previous = '\n';
    for c in text.chars() {
        if c == '\n' {
            line += 1;
            comment = false;
            // a plain scalar's quote never spans lines in the flow context trousse reads
            if quote == Some('\'') && depth == 0 {
                quote = None;
            }
        }
        match (quote, c) {
            _ if comment => {}
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '#') if previous.is_whitespace() => comment = true,
            (None, '"' | '\'') if "[{,: \t\n".contains(previous) => quote = Some(c),
            (None, '[' | '{') => {
                depth += 1;
                if depth > MAX_FLOW_DEPTH {
                    return Some(line);
                }
            }
            (None, ']' | '}') => depth = depth.saturating_sub(1),
            _ => {}
        }
        previous = c;
    }
    None
}

/// The refusal of a too-deep input: what, where and the limit.
pub(crate) fn refusal(line: usize) -> String {
    format!(
        "line {line}: brackets nest deeper than {MAX_FLOW_DEPTH} levels; no spec or lock does, \
         and such input is refused before it is parsed"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_brackets_are_found_before_parsing() {
        let deep = format!(
            "name: x\nlock: {}{}\n",
            "[".repeat(200_000),
            "]".repeat(200_000)
        );
        assert_eq!(too_deep(&deep), Some(2));
        let fine = "channels: [conda-forge]\ndependencies: [{a: [1, 2]}, \"[[[[\"]\n# [[[[[[\n";
        assert_eq!(too_deep(fine), None);
        let quoted = format!("x: '{}'\n", "[".repeat(100));
        assert_eq!(too_deep(&quoted), None);
    }
}
