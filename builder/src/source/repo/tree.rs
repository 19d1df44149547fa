//! A commit's files, read from git's objects, never from a checkout: nothing
//! of the repository is ever written to, or followed on, the build host.
//! Submodules are fetched through the same policy and read the same way.

use std::{collections::BTreeMap, path::Path, sync::Arc};

use git2::{ObjectType, Oid, Repository};

use super::{
    address::MAX_PATH_BYTES, mirror::Mirror, net::Spending, GitPolicy, RepoAddress, RepoError,
};

/// How deep submodules may nest.
const MAX_SUBMODULE_DEPTH: usize = 4;

/// What is at a path of the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoNode {
    /// A directory.
    Directory,
    /// A file, executable or not.
    File {
        /// The content.
        data: Vec<u8>,
        /// Whether git records it as executable.
        executable: bool,
    },
    /// A symbolic link, kept as a link (never followed here).
    Symlink(String),
}

/// A submodule, as it was read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SubmoduleRecord {
    /// Where it is in the repository.
    pub path: String,
    /// Its URL (without credentials).
    pub url: String,
    /// The commit the repository pins.
    pub commit: String,
}

/// A commit's files by path (`/`-separated, relative to the repository root).
#[derive(Debug, Default, Clone)]
pub struct RepoTree {
    /// Every directory, file and link.
    pub nodes: BTreeMap<String, RepoNode>,
    /// The submodules read into it.
    pub submodules: Vec<SubmoduleRecord>,
    bytes: u64,
}

/// What reading a tree needs: where mirrors live, the policy, what was spent.
pub(super) struct TreeReader<'a> {
    /// The mirrors' directory.
    pub mirrors: &'a Path,
    /// The policy.
    pub policy: &'a GitPolicy,
    /// What the fetches spent so far.
    pub spending: &'a Arc<Spending>,
}

impl TreeReader<'_> {
    /// Reads `commit` of the repository at `address` (held by `repo`), submodules included.
    pub(super) fn read(
        &self,
        repo: &Repository,
        commit: Oid,
        address: &RepoAddress,
    ) -> Result<RepoTree, RepoError> {
        let mut tree = RepoTree::default();
        self.read_into(repo, commit, &[address], "", &mut tree)?;
        Ok(tree)
    }

    /// Reads `commit` of the last of `chain` (the repository, then the
    /// submodules that lead to it) into `out` under `prefix`.
    fn read_into(
        &self,
        repo: &Repository,
        commit: Oid,
        chain: &[&RepoAddress],
        prefix: &str,
        out: &mut RepoTree,
    ) -> Result<(), RepoError> {
        let Some(&address) = chain.last() else {
            return Ok(());
        };
        let git = |e: git2::Error| RepoError::Mirror {
            path: repo.path().to_path_buf(),
            message: e.message().to_string(),
        };
        let root = repo
            .find_commit(commit)
            .and_then(|c| c.tree())
            .map_err(git)?;
        let mut gitlinks = Vec::new();
        self.walk(repo, &root, prefix, address, out, &mut gitlinks)?;
        if gitlinks.is_empty() {
            return Ok(());
        }
        let modules = match out.nodes.get(&join(prefix, ".gitmodules")) {
            Some(RepoNode::File { data, .. }) => parse_gitmodules(&String::from_utf8_lossy(data)),
            _ => BTreeMap::new(),
        };
        for (path, oid) in gitlinks {
            let relative = path
                .strip_prefix(prefix)
                .unwrap_or(&path)
                .trim_start_matches('/');
            let Some(url) = modules.get(relative) else {
                return Err(config(
                    address,
                    commit,
                    format!("submodule {path} has no URL in .gitmodules"),
                ));
            };
            if chain.len() >= MAX_SUBMODULE_DEPTH {
                return Err(refused(
                    address,
                    format!("submodules nest more than {MAX_SUBMODULE_DEPTH} deep"),
                ));
            }
            self.submodule(chain, url, &path, oid, out)?;
        }
        Ok(())
    }

    /// Fetches and reads one submodule into `out` under `path`; a submodule
    /// that is one of the repositories leading to it (a cycle) is refused
    /// before its mirror, still locked by that read, is waited for.
    fn submodule(
        &self,
        chain: &[&RepoAddress],
        url: &str,
        path: &str,
        oid: Oid,
        out: &mut RepoTree,
    ) -> Result<(), RepoError> {
        let Some(&parent) = chain.last() else {
            return Ok(());
        };
        let address = parent.join(url)?;
        self.policy.check(&address, Some(parent))?;
        if chain.iter().any(|a| a.url == address.url) {
            return Err(refused(
                parent,
                format!(
                    "its submodule {path} is {}, a repository that contains it (a cycle)",
                    address.display()
                ),
            ));
        }
        let mirror = Mirror::open(self.mirrors, &address, self.policy, self.spending)?;
        let wanted = oid.to_string();
        let commit = match mirror.resolve(&address, Some(&wanted), self.policy, self.spending) {
            Ok((commit, _)) => commit,
            Err(e) => {
                mirror.discard_if_fresh();
                return Err(e);
            }
        };
        insert(out, path, RepoNode::Directory, parent)?;
        out.submodules.push(SubmoduleRecord {
            path: path.to_string(),
            url: address.display(),
            commit: commit.to_string(),
        });
        let mut longer = chain.to_vec();
        longer.push(&address);
        self.read_into(&mirror.repo, commit, &longer, path, out)
    }

    /// Reads every entry under `root` into `out`, one directory at a time from
    /// a stack of its own (a repository never decides how deep the call stack
    /// goes); gitlinks (submodules) are returned.
    fn walk(
        &self,
        repo: &Repository,
        root: &git2::Tree<'_>,
        prefix: &str,
        address: &RepoAddress,
        out: &mut RepoTree,
        gitlinks: &mut Vec<(String, Oid)>,
    ) -> Result<(), RepoError> {
        let odb = repo
            .odb()
            .map_err(|e| refused(address, e.message().to_string()))?;
        let mut pending = vec![(root.id(), prefix.to_string())];
        while let Some((oid, directory)) = pending.pop() {
            let tree = repo
                .find_tree(oid)
                .map_err(|e| refused(address, e.message().to_string()))?;
            for entry in tree.iter() {
                let Some(path) = self.entry_path(&entry, &directory, address)? else {
                    continue;
                };
                self.count(out, path.len() as u64, address)?;
                match (entry.kind(), entry.filemode()) {
                    (Some(ObjectType::Tree), _) => {
                        self.check_depth(&path, address)?;
                        insert(out, &path, RepoNode::Directory, address)?;
                        pending.push((entry.id(), path));
                    }
                    (Some(ObjectType::Commit), _) => gitlinks.push((path, entry.id())),
                    (Some(ObjectType::Blob), mode) => {
                        // the size git's header declares, before anything is inflated
                        let (size, _) = odb
                            .read_header(entry.id())
                            .map_err(|e| refused(address, format!("{path}: {}", e.message())))?;
                        self.count(out, size as u64, address)?;
                        let blob = repo
                            .find_blob(entry.id())
                            .map_err(|e| refused(address, e.message().to_string()))?;
                        let node = blob_node(blob.content(), mode)
                            .map_err(|reason| refused(address, format!("{path}: {reason}")))?;
                        insert(out, &path, node, address)?;
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// The path of a tree entry under `directory`; `None` for `.git`, which is never read.
    fn entry_path(
        &self,
        entry: &git2::TreeEntry<'_>,
        directory: &str,
        address: &RepoAddress,
    ) -> Result<Option<String>, RepoError> {
        let name = entry.name().unwrap_or_default();
        if name.eq_ignore_ascii_case(".git") {
            return Ok(None);
        }
        if !safe_name(name) {
            return Err(refused(
                address,
                format!(
                    "its tree has an entry named {:?} under '{}'; git itself refuses such names",
                    entry.name_bytes().escape_ascii().to_string(),
                    crate::error::clip(directory, 200)
                ),
            ));
        }
        let path = join(directory, name);
        if path.len() > MAX_PATH_BYTES {
            return Err(refused(
                address,
                format!(
                    "the path {}… is longer than {MAX_PATH_BYTES} bytes",
                    crate::error::clip(&path, 120)
                ),
            ));
        }
        Ok(Some(path))
    }

    /// Refuses a directory nested deeper than the limit, naming it.
    fn check_depth(&self, path: &str, address: &RepoAddress) -> Result<(), RepoError> {
        let max = self.policy.limits.max_depth;
        if path.split('/').count() > max {
            return Err(refused(
                address,
                format!(
                    "its directories nest deeper than the limit of {max} (at {}…); \
                     an administrator sets the limit with --repo-max-depth",
                    crate::error::clip(path, 120)
                ),
            ));
        }
        Ok(())
    }

    /// Counts one more entry of `bytes`, refusing the repository past a limit.
    fn count(
        &self,
        out: &mut RepoTree,
        bytes: u64,
        address: &RepoAddress,
    ) -> Result<(), RepoError> {
        let limits = self.policy.limits;
        out.bytes = out.bytes.saturating_add(bytes);
        if out.nodes.len() as u64 >= limits.max_files {
            return Err(refused(
                address,
                format!("it has more than the limit of {} files", limits.max_files),
            ));
        }
        if out.bytes > limits.max_bytes {
            return Err(refused(
                address,
                format!(
                    "its files and paths hold more than the limit of {} bytes",
                    limits.max_bytes
                ),
            ));
        }
        Ok(())
    }
}

/// Adds a node; a second entry at one path (which git's own tools never
/// write: a link `x` beside a directory `x/`, say) refuses the repository.
fn insert(
    out: &mut RepoTree,
    path: &str,
    node: RepoNode,
    address: &RepoAddress,
) -> Result<(), RepoError> {
    if out.nodes.insert(path.to_string(), node).is_some() {
        return Err(refused(
            address,
            format!(
                "its tree has two entries at {}; git itself never writes such a tree",
                crate::error::clip(path, 200)
            ),
        ));
    }
    Ok(())
}

/// A file or link from a blob and its git file mode.
fn blob_node(content: &[u8], mode: i32) -> Result<RepoNode, String> {
    if mode == 0o120000 {
        let target = std::str::from_utf8(content)
            .map_err(|_| "a symbolic link whose target is not UTF-8".to_string())?;
        if target.is_empty() || target.len() > 4096 || target.contains('\0') {
            return Err("a symbolic link with an invalid target".into());
        }
        return Ok(RepoNode::Symlink(target.to_string()));
    }
    Ok(RepoNode::File {
        data: content.to_vec(),
        executable: mode & 0o111 != 0,
    })
}

/// A name git would write: no separator, no `.`/`..`, no NUL.
fn safe_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0', '\\'])
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}/{name}")
    }
}

fn refused(address: &RepoAddress, reason: String) -> RepoError {
    RepoError::Refused {
        url: address.display(),
        reason,
    }
}

fn config(address: &RepoAddress, commit: Oid, message: String) -> RepoError {
    RepoError::Config {
        url: address.display(),
        commit: commit.to_string(),
        message,
    }
}

/// `.gitmodules`: submodule path to URL. Read as data (an `include` is not
/// followed: a repository never makes the builder read a host file).
pub fn parse_gitmodules(text: &str) -> BTreeMap<String, String> {
    let mut sections: BTreeMap<String, (Option<String>, Option<String>)> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            current = line
                .strip_prefix("[submodule")
                .and_then(|r| r.trim().strip_suffix(']'))
                .map(|n| n.trim().trim_matches('"').to_string());
            continue;
        }
        let (Some(name), Some((key, value))) = (&current, line.split_once('=')) else {
            continue;
        };
        let value = value.trim().trim_matches('"').to_string();
        let entry = sections.entry(name.clone()).or_default();
        match key.trim() {
            "path" => entry.0 = Some(value.trim_end_matches('/').to_string()),
            "url" => entry.1 = Some(value),
            _ => {}
        }
    }
    sections
        .into_values()
        .filter_map(|(path, url)| Some((path?, url?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitmodules_map_paths_to_urls() {
        let text = "[submodule \"lib\"]\n\tpath = vendor/lib\n\turl = ../lib.git\n[include]\n\tpath = /etc/passwd\n[submodule \"x\"]\n path=x\n";
        let modules = parse_gitmodules(text);
        assert_eq!(modules.len(), 1, "{modules:?}");
        assert_eq!(modules["vendor/lib"], "../lib.git");
    }

    #[test]
    fn links_and_names_are_checked() {
        assert_eq!(
            blob_node(b"../../etc/passwd", 0o120000).unwrap(),
            RepoNode::Symlink("../../etc/passwd".into())
        );
        assert!(blob_node(b"", 0o120000).is_err());
        assert!(matches!(
            blob_node(b"#!/bin/sh\n", 0o100755).unwrap(),
            RepoNode::File {
                executable: true,
                ..
            }
        ));
        for bad in ["..", ".", "a/b", ""] {
            assert!(!safe_name(bad), "{bad}");
        }
    }
}
