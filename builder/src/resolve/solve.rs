//! The solve stage: specs and channels in, one package set per platform out.

use std::collections::{BTreeSet, HashMap};

use rattler_conda_types::{GenericVirtualPackage, MatchSpec, PackageName, Subdir};
use rattler_repodata_gateway::Gateway;
use rattler_solve::{resolvo, SolveError, SolverImpl, SolverTask};
use rattler_virtual_packages::VirtualPackages;

use crate::{error::error_chain, lockfile::LockedPlatform, source::spec::EnvSpec, BuildError};

/// The virtual packages a target platform has: `__glibc=2.28`, `__linux`, `__unix`
/// and `__archspec` of the platform, replaced or extended by `overrides`.
pub(crate) fn target_virtual_packages(
    platform: Subdir,
    overrides: &[GenericVirtualPackage],
) -> Vec<GenericVirtualPackage> {
    let mut packages: Vec<GenericVirtualPackage> = VirtualPackages::baseline_for_platform(platform)
        .into_generic_virtual_packages()
        .collect();
    for o in overrides {
        packages.retain(|p| p.name != o.name);
        packages.push(o.clone());
    }
    packages.sort_by(|a, b| a.name.cmp(&b.name));
    packages
}

/// Solves the spec for each of its platforms, against the virtual packages of the
/// target: the platform's baseline, then what the base image declares, then the spec's.
pub(crate) async fn solve(
    spec: &EnvSpec,
    gateway: &Gateway,
    base_virtual_packages: &HashMap<Subdir, Vec<GenericVirtualPackage>>,
    limit: &crate::guard::work_limit::WorkLimit,
) -> Result<Vec<LockedPlatform>, BuildError> {
    if spec.channels.is_empty() {
        return Err(BuildError::Spec(crate::source::spec::SpecError {
            file: spec.path.clone(),
            line: None,
            field: Some("channels".into()),
            message: "the spec lists no channels: add e.g. 'channels: [conda-forge]' or pass -c"
                .into(),
        }));
    }
    let mut solved = Vec::new();
    for &platform in &spec.image.platforms {
        let overrides: Vec<GenericVirtualPackage> = base_virtual_packages
            .get(&platform)
            .into_iter()
            .flatten()
            .chain(&spec.image.virtual_packages)
            .cloned()
            .collect();
        solved.push(solve_platform(spec, gateway, platform, &overrides, limit).await?);
    }
    Ok(solved)
}

/// A gateway error as the channels of `spec` being unavailable.
fn channel_error(
    spec: &EnvSpec,
) -> impl FnOnce(rattler_repodata_gateway::GatewayError) -> BuildError + '_ {
    move |e| BuildError::Channel {
        channel: channel_names(spec).join(", "),
        source: Box::new(e),
    }
}

fn channel_names(spec: &EnvSpec) -> Vec<String> {
    spec.channels
        .iter()
        .map(|c| c.base_url.to_string())
        .collect()
}

/// Solves the spec for one platform.
async fn solve_platform(
    spec: &EnvSpec,
    gateway: &Gateway,
    platform: Subdir,
    overrides: &[GenericVirtualPackage],
    limit: &crate::guard::work_limit::WorkLimit,
) -> Result<LockedPlatform, BuildError> {
    let repodata = gateway
        .query(
            spec.channels.clone(),
            [platform, Subdir::NoArch],
            spec.dependencies.clone(),
        )
        .recursive(true)
        .execute()
        .await
        .map_err(channel_error(spec))?;
    let virtual_packages = target_virtual_packages(platform, overrides);
    let task = SolverTask {
        specs: spec.dependencies.clone(),
        virtual_packages: virtual_packages.clone(),
        timeout: limit.remaining(),
        cancellation_token: Some(limit.token()),
        ..SolverTask::from_iter(&repodata)
    };
    let result = match resolvo::Solver.solve(task) {
        Ok(result) => result,
        Err(SolveError::Cancelled) => return Err(limit.error("solving")),
        Err(error) => return Err(explain_failure(spec, gateway, platform, error).await),
    };
    let mut records = result.records;
    records.sort_by(|a, b| a.package_record.name.cmp(&b.package_record.name));
    Ok(LockedPlatform {
        platform,
        virtual_packages,
        records,
        pypi: Vec::new(),
    })
}

/// Why a solve failed: packages no channel has, or the solver's explanation
/// with the versions that exist of each pinned package.
async fn explain_failure(
    spec: &EnvSpec,
    gateway: &Gateway,
    platform: Subdir,
    error: SolveError,
) -> BuildError {
    let (names, repodata) = match every_version(spec, gateway, platform).await {
        Ok(found) => found,
        Err(e) => return e,
    };
    let missing = missing_names(&names, &repodata);
    if !missing.is_empty() {
        return not_found(spec, gateway, platform, missing).await;
    }
    let explanation = match error {
        SolveError::Unsolvable(lines) => lines.join("\n"),
        other => error_chain(&other),
    };
    BuildError::Unsolvable {
        platform: platform.to_string(),
        explanation: format!("{explanation}{}", available_versions(spec, &repodata)),
    }
}

/// The versions the channels have of each requested package pinned to a
/// version, newest first: what a teacher needs to fix an impossible pin.
fn available_versions(spec: &EnvSpec, repodata: &[rattler_repodata_gateway::RepoData]) -> String {
    let mut text = String::new();
    for dependency in spec.dependencies.iter().filter(|d| d.version.is_some()) {
        let Some(name) = dependency.name.as_exact() else {
            continue;
        };
        let mut versions: Vec<&rattler_conda_types::Version> = repodata
            .iter()
            .flat_map(|r| r.iter())
            .filter(|r| &r.package_record.name == name)
            .map(|r| r.package_record.version.version())
            .collect();
        versions.sort_by(|a, b| b.cmp(a));
        versions.dedup();
        if versions.is_empty() {
            continue;
        }
        let shown: Vec<String> = versions.iter().take(12).map(ToString::to_string).collect();
        let more = if versions.len() > 12 { ", …" } else { "" };
        text.push_str(&format!(
            "\n{} is available as: {}{more}",
            name.as_source(),
            shown.join(", ")
        ));
    }
    text
}

/// The requested package names that no channel has at all, for any version.
pub(crate) async fn unknown_packages(
    spec: &EnvSpec,
    gateway: &Gateway,
    platform: Subdir,
) -> Result<Vec<String>, BuildError> {
    let (names, repodata) = every_version(spec, gateway, platform).await?;
    Ok(missing_names(&names, &repodata))
}

/// Of `names`, those the spec's channels have packages of (first platform, and noarch).
pub(crate) async fn names_in_channels(
    spec: &EnvSpec,
    gateway: &Gateway,
    names: &[String],
) -> Vec<String> {
    let platform = spec
        .image
        .platforms
        .first()
        .copied()
        .unwrap_or(Subdir::Linux64);
    let known = known_names(spec, gateway, platform).await;
    names
        .iter()
        .filter(|n| {
            known
                .iter()
                .any(|k| k.as_normalized() == n.to_ascii_lowercase())
        })
        .cloned()
        .collect()
}

/// Every package name the spec's channels have for `platform` and noarch
/// (none when they cannot be read: the names only improve a message).
async fn known_names(spec: &EnvSpec, gateway: &Gateway, platform: Subdir) -> Vec<PackageName> {
    gateway
        .names(spec.channels.clone(), [platform, Subdir::NoArch])
        .execute()
        .await
        .map(|n| n.names)
        .unwrap_or_default()
}

/// Packages no channel has, with the close names the channels do have.
pub(crate) async fn not_found(
    spec: &EnvSpec,
    gateway: &Gateway,
    platform: Subdir,
    missing: Vec<String>,
) -> BuildError {
    let known = known_names(spec, gateway, platform).await;
    let suggestions: Vec<String> = missing
        .iter()
        .filter_map(|name| closest(name, &known).map(|k| format!("'{k}' for '{name}'")))
        .collect();
    BuildError::PackageNotFound {
        hint: if suggestions.is_empty() {
            String::new()
        } else {
            format!("; did you mean {}?", suggestions.join(", "))
        },
        names: missing,
        channels: channel_names(spec),
        platform: platform.to_string(),
    }
}

/// The known name closest to `name`, if one is close enough to be a typo.
fn closest<'a>(name: &str, known: &'a [PackageName]) -> Option<&'a str> {
    let name = name.to_ascii_lowercase();
    known
        .iter()
        .map(|k| k.as_normalized())
        .map(|k| (strsim::levenshtein(&name, k), k))
        .filter(|(d, k)| *d > 0 && *d <= 2.max(k.len() / 5))
        .min()
        .map(|(_, k)| k)
}

/// The names of which `repodata` has no package at all.
fn missing_names(
    names: &[PackageName],
    repodata: &[rattler_repodata_gateway::RepoData],
) -> Vec<String> {
    let available: BTreeSet<&str> = repodata
        .iter()
        .flat_map(|r| r.iter())
        .map(|r| r.package_record.name.as_normalized())
        .collect();
    names
        .iter()
        .filter(|n| !available.contains(n.as_normalized()))
        .map(|n| n.as_source().to_string())
        .collect()
}

/// Every version the channels have of each requested package.
async fn every_version(
    spec: &EnvSpec,
    gateway: &Gateway,
    platform: Subdir,
) -> Result<(Vec<PackageName>, Vec<rattler_repodata_gateway::RepoData>), BuildError> {
    let names: Vec<PackageName> = spec
        .dependencies
        .iter()
        .filter_map(|d| d.name.as_exact())
        .filter(|n| !n.as_normalized().starts_with("__"))
        .cloned()
        .collect();
    let repodata = gateway
        .query(
            spec.channels.clone(),
            [platform, Subdir::NoArch],
            names.iter().cloned().map(MatchSpec::from),
        )
        .execute()
        .await
        .map_err(channel_error(spec))?;
    Ok((names, repodata.repodata))
}
