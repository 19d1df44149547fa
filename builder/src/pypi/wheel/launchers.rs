//! Entry points: the console and GUI scripts of `entry_points.txt`, and the
//! launchers pip writes for them.

/// The `(name, module, attribute)` of each console and GUI script of `entry_points.txt`.
pub(super) fn parse_entry_points(text: &str) -> Result<Vec<(String, String, String)>, String> {
    let mut section = "";
    let mut scripts = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim();
            continue;
        }
        if section != "console_scripts" && section != "gui_scripts" {
            continue;
        }
        let (name, value) = line
            .split_once('=')
            .ok_or_else(|| format!("entry_points.txt line {line:?} has no '='"))?;
        scripts.push(parse_entry_point(name.trim(), value.trim())?);
    }
    Ok(scripts)
}

/// One `name = module:attr.sub [extras]` script, checked.
fn parse_entry_point(name: &str, value: &str) -> Result<(String, String, String), String> {
    let unsafe_name = name.is_empty()
        || name == "."
        || name == ".."
        || name.contains(['/', '\\'])
        || name.chars().any(char::is_control);
    if unsafe_name {
        return Err(format!(
            "the entry point name {name:?} is not a safe file name"
        ));
    }
    let spec = match value.split_once('[') {
        Some((spec, extras)) if extras.trim_end().ends_with(']') => spec.trim_end(),
        Some(_) => return Err(format!("the entry point {name} = {value:?} has bad extras")),
        None => value,
    };
    let (module, attr) = spec
        .split_once(':')
        .map(|(module, attr)| (module.trim(), attr.trim()))
        .filter(|(module, attr)| dotted_identifier(module) && dotted_identifier(attr))
        .ok_or_else(|| format!("the entry point {name} = {value:?} is not module:attribute"))?;
    Ok((name.to_string(), module.to_string(), attr.to_string()))
}

/// Whether `s` is Python identifiers joined by dots.
fn dotted_identifier(s: &str) -> bool {
    s.split('.').all(|part| {
        let mut chars = part.chars();
        chars.next().is_some_and(|c| c == '_' || c.is_alphabetic())
            && chars.all(|c| c == '_' || c.is_alphanumeric())
    })
}

/// The launcher of an entry point, as pip (installer) writes it.
pub(super) fn launcher(python: &str, module: &str, attr: &str) -> String {
    let import = attr.split('.').next().unwrap_or(attr);
    format!(
        "#!{python}\n\
         # -*- coding: utf-8 -*-\n\
         import re\n\
         import sys\n\
         from {module} import {import}\n\
         if __name__ == \"__main__\":\n    \
         sys.argv[0] = re.sub(r\"(-script\\.pyw|\\.exe)?$\", \"\", sys.argv[0])\n    \
         sys.exit({attr}())\n"
    )
}
