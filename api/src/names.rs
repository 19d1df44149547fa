//! What a course or environment name is: one OCI repository path component.

/// Whether `name` is 1 to 64 of `a-z`, `0-9`, `.`, `_`, `-`, starting and
/// ending with a letter or digit.
pub(crate) fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric()
}
