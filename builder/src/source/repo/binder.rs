//! Binder's conventions, as repo2docker reads them: which files of a
//! repository say what its environment is, and which of them trousse
//! cannot honour (each refused with what to do instead).

use super::tree::{RepoNode, RepoTree};

/// The environment.yml repo2docker gives a repository with no configuration file.
pub const DEFAULT_ENVIRONMENT: &str = include_str!("default-environment.yml");

/// Where a repository's environment comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvironmentFile {
    /// Its own `environment.yml` (path in the repository, text).
    Spec {
        /// The file's path in the repository.
        path: String,
        /// Its text.
        text: String,
    },
    /// repo2docker's default environment, with Python pinned by `runtime.txt`.
    Default {
        /// `X.Y` from `runtime.txt`, if any.
        python: Option<String>,
    },
}

/// What a repository's configuration files ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinderPlan {
    /// The environment.
    pub environment: EnvironmentFile,
    /// The `start` script, run by the image's entrypoint.
    pub start: Option<String>,
    /// The `postBuild` script.
    pub post_build: Option<String>,
    /// Package names listed in `apt.txt` (refused; named to find conda equivalents).
    pub apt: Vec<String>,
    /// `requirements.txt` (path, text) when there is no environment.yml:
    /// PyPI packages over the default environment, as repo2docker installs them.
    pub requirements: Option<(String, String)>,
    /// The repository's text files a requirements list may include (`-r`), by path.
    pub text_files: std::collections::BTreeMap<String, String>,
}

/// Files trousse will not build, with what to do instead.
const UNSUPPORTED: [(&str, &str); 8] = [
    ("Dockerfile", "trousse builds conda environments, not Dockerfiles: describe the packages in environment.yml"),
    ("Project.toml", "Julia projects are not built: add julia and its packages from conda-forge to environment.yml"),
    ("default.nix", "Nix environments are not built: list the packages in environment.yml"),
    ("install.R", "R packages are installed from conda-forge: add r-base and the r-… packages to environment.yml"),
    ("Pipfile", "Pipfile is not read: list the packages in environment.yml"),
    ("Pipfile.lock", "Pipfile.lock is not read: list the packages in environment.yml"),
    ("setup.py", "the repository is not installed as a Python package: list its dependencies in environment.yml"),
    ("DESCRIPTION", "R packages are installed from conda-forge: add r-base and the r-… packages to environment.yml"),
];

/// Reads the configuration files of `tree` the way repo2docker does.
pub(super) fn plan(tree: &RepoTree) -> Result<BinderPlan, String> {
    let dir = config_dir(tree)?;
    let file = |name: &str| -> Result<Option<(String, String)>, String> {
        let path = if dir.is_empty() {
            name.to_string()
        } else {
            format!("{dir}/{name}")
        };
        read_file(tree, &path).map(|t| t.map(|text| (path, text)))
    };
    let environment = match (file("environment.yml")?, file("environment.yaml")?) {
        (Some((path, text)), _) | (None, Some((path, text))) => {
            Some(EnvironmentFile::Spec { path, text })
        }
        (None, None) => None,
    };
    for (name, advice) in UNSUPPORTED {
        let root_only = matches!(name, "setup.py" | "DESCRIPTION");
        if root_only && !dir.is_empty() {
            continue;
        }
        if let Some((path, _)) = file(name)? {
            return Err(format!("{path}: {advice}"));
        }
    }
    if dir.is_empty() && is_python_project(tree)? {
        return Err("pyproject.toml: the repository is not installed as a Python package: list its dependencies in environment.yml".into());
    }
    // with an environment.yml, repo2docker ignores requirements.txt and runtime.txt
    let requirements = match environment {
        Some(_) => None,
        None => file("requirements.txt")?,
    };
    let environment = match environment {
        Some(e) => e,
        None => EnvironmentFile::Default {
            python: runtime_python(file("runtime.txt")?)?,
        },
    };
    Ok(BinderPlan {
        environment,
        start: file("start")?.map(|(path, _)| path),
        post_build: file("postBuild")?.map(|(path, _)| path),
        apt: file("apt.txt")?
            .map(|(_, text)| apt_packages(&text))
            .unwrap_or_default(),
        requirements,
        text_files: text_files(tree),
    })
}

/// The largest text file kept for `-r` includes.
const MAX_TEXT_FILE: usize = 1 << 20;

/// The repository's `*.txt` files that are UTF-8 and small, by path.
fn text_files(tree: &RepoTree) -> std::collections::BTreeMap<String, String> {
    tree.nodes
        .iter()
        .filter(|(path, _)| path.ends_with(".txt"))
        .filter_map(|(path, node)| match node {
            RepoNode::File { data, .. } if data.len() <= MAX_TEXT_FILE => {
                String::from_utf8(data.clone())
                    .ok()
                    .map(|t| (path.clone(), t))
            }
            _ => None,
        })
        .collect()
}

/// `binder/` or `.binder/` when one exists, else the root.
fn config_dir(tree: &RepoTree) -> Result<&'static str, String> {
    let is_dir = |p: &str| matches!(tree.nodes.get(p), Some(RepoNode::Directory));
    match (is_dir("binder"), is_dir(".binder")) {
        (true, true) => {
            Err("both binder/ and .binder/ exist: keep one (repo2docker refuses this too)".into())
        }
        (true, false) => Ok("binder"),
        (false, true) => Ok(".binder"),
        (false, false) => Ok(""),
    }
}

/// The text of a regular file at `path`, following links that stay inside the repository.
fn read_file(tree: &RepoTree, path: &str) -> Result<Option<String>, String> {
    let mut current = path.to_string();
    for _ in 0..8 {
        match tree.nodes.get(&current) {
            None | Some(RepoNode::Directory) => return Ok(None),
            Some(RepoNode::File { data, .. }) => {
                return String::from_utf8(data.clone())
                    .map(Some)
                    .map_err(|_| format!("{path} is not UTF-8 text"));
            }
            Some(RepoNode::Symlink(target)) => {
                current = resolve_link(&current, target).ok_or_else(|| {
                    format!("{path} is a link to {target}, outside the repository")
                })?;
            }
        }
    }
    Err(format!("{path} is a chain of links too long to follow"))
}

/// Where a link at `link` to `target` points, if that stays inside the repository.
fn resolve_link(link: &str, target: &str) -> Option<String> {
    if target.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = link.split('/').collect();
    parts.pop();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            other => parts.push(other),
        }
    }
    Some(parts.join("/"))
}

/// A root `pyproject.toml` that makes the repository an installable package.
fn is_python_project(tree: &RepoTree) -> Result<bool, String> {
    Ok(read_file(tree, "pyproject.toml")?
        .is_some_and(|t| t.contains("[project]") && t.contains("[build-system]")))
}

/// `runtime.txt`: `python-X.Y` (or `python-3`) pins Python; anything else is refused.
fn runtime_python(runtime: Option<(String, String)>) -> Result<Option<String>, String> {
    let Some((path, text)) = runtime else {
        return Ok(None);
    };
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_default();
    if line.starts_with("r-") {
        return Err(format!("{path}: R environments are installed from conda-forge: add r-base and the r-… packages to environment.yml"));
    }
    let version = line.strip_prefix("python-").filter(|v| {
        !v.is_empty()
            && v.split('.')
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
    });
    match version {
        Some(v) => Ok(Some(v.to_string())),
        None => Err(format!(
            "{path}: '{}' is not python-X.Y (e.g. python-3.12)",
            crate::error::clip(line, 60)
        )),
    }
}

/// Package names of `apt.txt` (comments and blank lines left out).
fn apt_packages(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .map(ToString::to_string)
        .collect()
}

/// The default environment, with `python` pinned to `X.Y` when given.
pub fn default_environment(python: Option<&str>) -> String {
    match python {
        None => DEFAULT_ENVIRONMENT.to_string(),
        Some(version) => DEFAULT_ENVIRONMENT
            .lines()
            .map(|l| {
                if l.trim_start().starts_with("- python=") {
                    format!("- python={version}.*")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> RepoTree {
        let mut tree = RepoTree::default();
        for (path, text) in files {
            let mut parent = String::new();
            for part in path.split('/').collect::<Vec<_>>().split_last().unwrap().1 {
                parent = if parent.is_empty() {
                    part.to_string()
                } else {
                    format!("{parent}/{part}")
                };
                tree.nodes.insert(parent.clone(), RepoNode::Directory);
            }
            let node = match text.strip_prefix("->") {
                Some(target) => RepoNode::Symlink(target.into()),
                None => RepoNode::File {
                    data: text.as_bytes().to_vec(),
                    executable: false,
                },
            };
            tree.nodes.insert(path.to_string(), node);
        }
        tree
    }

    #[test]
    fn the_binder_folder_wins_over_the_root() {
        let t = tree(&[
            ("environment.yml", "root"),
            ("binder/environment.yml", "binder"),
            ("binder/start", "#!/bin/sh\nexec \"$@\"\n"),
            ("Dockerfile", "FROM x"),
        ]);
        let plan = plan(&t).unwrap();
        assert_eq!(
            plan.environment,
            EnvironmentFile::Spec {
                path: "binder/environment.yml".into(),
                text: "binder".into()
            }
        );
        assert_eq!(plan.start.as_deref(), Some("binder/start"));
    }

    #[test]
    fn unsupported_files_are_named_with_advice() {
        let both = tree(&[("binder/a", "x"), (".binder/b", "y")]);
        assert!(plan(&both)
            .unwrap_err()
            .contains("both binder/ and .binder/"));
        let docker = plan(&tree(&[("Dockerfile", "FROM x")])).unwrap_err();
        assert!(docker.starts_with("Dockerfile:"), "{docker}");
        let req = plan(&tree(&[("requirements.txt", "numpy")])).unwrap();
        assert_eq!(
            req.requirements,
            Some(("requirements.txt".into(), "numpy".into()))
        );
        // requirements.txt is ignored beside an environment.yml, as repo2docker does
        plan(&tree(&[
            ("requirements.txt", "numpy"),
            ("environment.yml", "x"),
        ]))
        .unwrap();
    }

    #[test]
    fn runtime_txt_pins_python_of_the_default_environment() {
        let plan = plan(&tree(&[("runtime.txt", "python-3.11\n")])).unwrap();
        assert_eq!(
            plan.environment,
            EnvironmentFile::Default {
                python: Some("3.11".into())
            }
        );
        assert!(default_environment(Some("3.11")).contains("- python=3.11.*"));
        let bad = super::plan(&tree(&[("runtime.txt", "python3.11")])).unwrap_err();
        assert!(bad.contains("python-X.Y"), "{bad}");
        let ignored = super::plan(&tree(&[
            ("runtime.txt", "nonsense"),
            ("environment.yml", "x"),
        ]));
        assert!(
            ignored.is_ok(),
            "runtime.txt is ignored beside environment.yml"
        );
    }

    #[test]
    fn links_are_followed_only_inside_the_repository() {
        let inside = tree(&[
            ("binder/environment.yml", "->../env/course.yml"),
            ("env/course.yml", "course"),
        ]);
        assert!(
            matches!(plan(&inside).unwrap().environment, EnvironmentFile::Spec { text, .. } if text == "course")
        );
        let outside = tree(&[("environment.yml", "->../../etc/passwd")]);
        assert!(plan(&outside)
            .unwrap_err()
            .contains("outside the repository"));
        let absolute = tree(&[("environment.yml", "->/etc/passwd")]);
        assert!(plan(&absolute).is_err());
    }
}
