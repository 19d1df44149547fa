//! A small HTML scanner: the `<a>` and `<base>` tags of an index page, with
//! their attributes unescaped.

/// An HTML tag's name and attributes (names lowercase, values unescaped).
pub(super) type Tag = (String, Vec<(String, String)>);

/// The `<a>` and `<base>` tags of an HTML document, comments skipped.
pub(super) fn scan_tags(html: &str) -> Vec<Tag> {
    let mut tags = Vec::new();
    let mut rest = html;
    while let Some(lt) = rest.find('<') {
        rest = &rest[lt + 1..];
        if let Some(comment) = rest.strip_prefix("!--") {
            rest = comment.find("-->").map_or("", |end| &comment[end + 3..]);
            continue;
        }
        let len = rest
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(rest.len());
        let name = rest[..len].to_ascii_lowercase();
        rest = &rest[len..];
        if name == "a" || name == "base" {
            let (attrs, after) = scan_attributes(rest);
            tags.push((name, attrs));
            rest = after;
        }
    }
    tags
}

/// The attributes of a tag up to its `>`, and what follows it.
fn scan_attributes(mut s: &str) -> (Vec<(String, String)>, &str) {
    let mut attrs = Vec::new();
    loop {
        s = s.trim_start_matches(|c: char| c.is_ascii_whitespace() || c == '/');
        if s.is_empty() {
            return (attrs, s);
        }
        if let Some(after) = s.strip_prefix('>') {
            return (attrs, after);
        }
        let len = s
            .find(|c: char| c.is_ascii_whitespace() || matches!(c, '=' | '>' | '/'))
            .unwrap_or(s.len());
        if len == 0 {
            s = &s[1..]; // a stray '='
            continue;
        }
        let name = s[..len].to_ascii_lowercase();
        s = s[len..].trim_start_matches(|c: char| c.is_ascii_whitespace());
        let mut value = String::new();
        if let Some(after) = s.strip_prefix('=') {
            let (raw, after) =
                attribute_value(after.trim_start_matches(|c: char| c.is_ascii_whitespace()));
            value = unescape_html(raw);
            s = after;
        }
        attrs.push((name, value));
    }
}

/// A quoted or unquoted attribute value, and what follows it.
fn attribute_value(s: &str) -> (&str, &str) {
    match s.chars().next() {
        Some(quote @ ('"' | '\'')) => {
            let body = &s[1..];
            match body.find(quote) {
                Some(end) => (&body[..end], &body[end + 1..]),
                None => (body, ""),
            }
        }
        _ => {
            let end = s
                .find(|c: char| c.is_ascii_whitespace() || c == '>')
                .unwrap_or(s.len());
            s.split_at(end)
        }
    }
}

/// Replaces HTML character references (`&gt;`, `&#62;`, `&#x3e;`…); unknown ones are kept.
fn unescape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let decoded = rest.find(';').filter(|&end| end <= 10).and_then(|end| {
            let entity = &rest[1..end];
            let c = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => entity
                    .strip_prefix('#')
                    .and_then(|n| match n.strip_prefix(['x', 'X']) {
                        Some(hex) => u32::from_str_radix(hex, 16).ok(),
                        None => n.parse().ok(),
                    })
                    .and_then(char::from_u32),
            };
            c.map(|c| (c, end + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}
