//! Wheel file names, the wheel tags a target accepts (in `packaging.tags`'
//! order of preference) and the PEP 508 marker environment of the target.
//!
//! The target is the image's interpreter and machine, never this host.

use std::{collections::HashMap, str::FromStr};

use pep440_rs::Version;
use pep508_rs::{MarkerEnvironment, MarkerEnvironmentBuilder, PackageName};
use rattler_conda_types::Subdir;

/// A wheel's file name, parsed: `{name}-{version}(-{build})?-{python}-{abi}-{platform}.whl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WheelName {
    /// The distribution name (normalized).
    pub name: PackageName,
    /// The version.
    pub version: Version,
    /// The optional build tag (starts with a digit).
    pub build_tag: Option<String>,
    /// The Python tags (`cp312`, `py3`…), a compressed set split on `.`.
    pub python_tags: Vec<String>,
    /// The ABI tags (`cp312`, `abi3`, `none`…).
    pub abi_tags: Vec<String>,
    /// The platform tags (`manylinux_2_17_x86_64`, `any`…).
    pub platform_tags: Vec<String>,
}

impl WheelName {
    /// Parses a wheel file name; the error says what is wrong with it.
    pub fn parse(file_name: &str) -> Result<Self, String> {
        let stem = file_name
            .strip_suffix(".whl")
            .ok_or_else(|| format!("{file_name}: a wheel's name ends with .whl"))?;
        let parts: Vec<&str> = stem.split('-').collect();
        let (name, version, build, tags) = match parts.as_slice() {
            [n, v, py, abi, plat] => (*n, *v, None, [*py, *abi, *plat]),
            [n, v, b, py, abi, plat] => (*n, *v, Some(*b), [*py, *abi, *plat]),
            _ => {
                return Err(format!(
                    "{file_name}: a wheel's name is NAME-VERSION(-BUILD)?-PYTHON-ABI-PLATFORM.whl"
                ))
            }
        };
        if name.is_empty()
            || name.contains("__")
            || !name
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '.')
        {
            return Err(format!("{file_name}: invalid project name '{name}'"));
        }
        let name = PackageName::from_str(name)
            .map_err(|e| format!("{file_name}: invalid project name: {e}"))?;
        let version = Version::from_str(version)
            .map_err(|e| format!("{file_name}: invalid version '{version}': {e}"))?;
        if let Some(build) = build {
            if !build.starts_with(|c: char| c.is_ascii_digit()) {
                return Err(format!(
                    "{file_name}: build tag '{build}' does not start with a digit"
                ));
            }
        }
        let [python_tags, abi_tags, platform_tags] = tags.map(split_tag_set);
        if [&python_tags, &abi_tags, &platform_tags]
            .iter()
            .any(|set| set.iter().any(String::is_empty))
        {
            return Err(format!("{file_name}: empty wheel tag"));
        }
        Ok(WheelName {
            name,
            version,
            build_tag: build.map(str::to_string),
            python_tags,
            abi_tags,
            platform_tags,
        })
    }

    /// Whether the wheel is pure Python (`any` platform only).
    pub fn is_pure(&self) -> bool {
        self.platform_tags.iter().all(|p| p == "any")
    }
}

/// A compressed tag set (`py2.py3`) split on `.`, lowercase.
fn split_tag_set(set: &str) -> Vec<String> {
    set.split('.').map(str::to_ascii_lowercase).collect()
}

/// The interpreter and machine wheels are chosen for (the image, not this host).
#[derive(Debug, Clone)]
pub struct WheelTarget {
    /// CPython's (major, minor) version.
    pub python: (u32, u32),
    /// The conda platform of the image.
    pub platform: Subdir,
    /// The (major, minor) glibc version of the image (linux only).
    pub glibc: (u32, u32),
}

impl WheelTarget {
    /// The wheel tags the target accepts, best first.
    pub fn tags(&self) -> CompatibleTags {
        let platforms = self.platform_tags();
        let mut tags = Vec::new();
        cpython_tags(self.python, &platforms, &mut tags);
        compatible_tags(self.python, &platforms, &mut tags);
        CompatibleTags::new(tags)
    }

    /// The platform tags of the target, best first (manylinux for linux, none elsewhere).
    pub fn platform_tags(&self) -> Vec<String> {
        match self.linux_arch() {
            Some(arch) => manylinux_tags(arch, self.glibc),
            None => Vec::new(),
        }
    }

    /// The target's PEP 508 marker environment.
    pub fn markers(&self) -> MarkerEnvironment {
        let (major, minor) = self.python;
        let python_version = format!("{major}.{minor}");
        let python_full_version = format!("{major}.{minor}.0");
        let (sys_platform, platform_system, os_name) = self.os();
        let builder = MarkerEnvironmentBuilder {
            implementation_name: "cpython",
            implementation_version: &python_full_version,
            os_name,
            platform_machine: self.machine(),
            platform_python_implementation: "CPython",
            platform_release: "",
            platform_system,
            platform_version: "",
            python_full_version: &python_full_version,
            python_version: &python_version,
            sys_platform,
        };
        // Versions made of two integers always parse.
        MarkerEnvironment::try_from(builder).unwrap_or_else(|_| unreachable!("numeric versions"))
    }

    /// The wheel architecture of a linux target, None for other systems.
    fn linux_arch(&self) -> Option<&'static str> {
        if !self.platform.is_linux() {
            return None;
        }
        Some(self.machine())
    }

    /// `sys.platform`, `platform.system()` and `os.name` of the target.
    fn os(&self) -> (&'static str, &'static str, &'static str) {
        let p = self.platform;
        if p.is_osx() {
            ("darwin", "Darwin", "posix")
        } else if p.is_windows() {
            ("win32", "Windows", "nt")
        } else {
            ("linux", "Linux", "posix")
        }
    }

    /// `platform.machine()` of the target.
    fn machine(&self) -> &'static str {
        match self.platform {
            Subdir::Linux32 => "i686",
            Subdir::LinuxAarch64 => "aarch64",
            Subdir::LinuxArmV6l => "armv6l",
            Subdir::LinuxArmV7l => "armv7l",
            Subdir::LinuxLoongArch64 => "loongarch64",
            Subdir::LinuxPpc64le => "ppc64le",
            Subdir::LinuxPpc64 => "ppc64",
            Subdir::LinuxPpc => "ppc",
            Subdir::LinuxS390X => "s390x",
            Subdir::LinuxRiscv32 => "riscv32",
            Subdir::LinuxRiscv64 => "riscv64",
            Subdir::OsxArm64 => "arm64",
            Subdir::Win64 => "AMD64",
            Subdir::WinArm64 => "ARM64",
            Subdir::Win32 => "x86",
            _ => "x86_64",
        }
    }
}

/// `packaging.tags.cpython_tags`: the interpreter's own ABI, abi3, none, then older abi3.
fn cpython_tags(python: (u32, u32), platforms: &[String], tags: &mut Vec<String>) {
    let (major, minor) = python;
    let interpreter = format!("cp{major}{minor}");
    let abi3 = major == 3 && minor >= 2;
    for abi in [
        Some(interpreter.as_str()),
        abi3.then_some("abi3"),
        Some("none"),
    ]
    .into_iter()
    .flatten()
    {
        tags.extend(platforms.iter().map(|p| format!("{interpreter}-{abi}-{p}")));
    }
    if abi3 {
        for older in (2..minor).rev() {
            tags.extend(
                platforms
                    .iter()
                    .map(|p| format!("cp{major}{older}-abi3-{p}")),
            );
        }
    }
}

/// `packaging.tags.compatible_tags`: pyXY on the platforms, then pure wheels.
fn compatible_tags(python: (u32, u32), platforms: &[String], tags: &mut Vec<String>) {
    let versions = py_interpreter_range(python);
    for version in &versions {
        tags.extend(platforms.iter().map(|p| format!("{version}-none-{p}")));
    }
    tags.push(format!("cp{}{}-none-any", python.0, python.1));
    tags.extend(versions.iter().map(|v| format!("{v}-none-any")));
}

/// `py3Y`, `py3`, then `py3(Y-1)` down to `py30`.
fn py_interpreter_range((major, minor): (u32, u32)) -> Vec<String> {
    let mut versions = vec![format!("py{major}{minor}"), format!("py{major}")];
    versions.extend((0..minor).rev().map(|m| format!("py{major}{m}")));
    versions
}

/// `manylinux_2_Y_ARCH` from the target's glibc down to the oldest, with the legacy aliases.
fn manylinux_tags(arch: &str, glibc: (u32, u32)) -> Vec<String> {
    if glibc.0 != 2 {
        return Vec::new();
    }
    let oldest = if matches!(arch, "x86_64" | "i686") {
        5
    } else {
        17
    };
    let mut tags = Vec::new();
    for minor in (oldest..=glibc.1).rev() {
        tags.push(format!("manylinux_2_{minor}_{arch}"));
        let legacy = match minor {
            17 => Some("manylinux2014"),
            12 => Some("manylinux2010"),
            5 => Some("manylinux1"),
            _ => None,
        };
        if let Some(legacy) = legacy {
            tags.push(format!("{legacy}_{arch}"));
        }
    }
    tags
}

/// The wheel tags a target accepts, each with its rank (lower is better).
#[derive(Debug, Clone)]
pub struct CompatibleTags {
    ranks: HashMap<String, usize>,
}

impl CompatibleTags {
    /// Ranks `python-abi-platform` tags in the order given (duplicates keep their first rank).
    fn new(tags: Vec<String>) -> Self {
        let mut ranks = HashMap::with_capacity(tags.len());
        for (rank, tag) in tags.into_iter().enumerate() {
            ranks.entry(tag).or_insert(rank);
        }
        CompatibleTags { ranks }
    }

    /// The best rank of the wheel's tags (lower is better); None when it cannot be installed.
    pub fn rank(&self, wheel: &WheelName) -> Option<usize> {
        let mut best: Option<usize> = None;
        for python in &wheel.python_tags {
            for abi in &wheel.abi_tags {
                for platform in &wheel.platform_tags {
                    let tag = format!("{python}-{abi}-{platform}");
                    if let Some(&rank) = self.ranks.get(&tag) {
                        best = Some(best.map_or(rank, |b| b.min(rank)));
                    }
                }
            }
        }
        best
    }

    /// How many tags are accepted.
    pub fn len(&self) -> usize {
        self.ranks.len()
    }

    /// Whether no tag is accepted.
    pub fn is_empty(&self) -> bool {
        self.ranks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(platform: Subdir) -> WheelTarget {
        WheelTarget {
            python: (3, 12),
            platform,
            glibc: (2, 28),
        }
    }

    fn rank(tags: &CompatibleTags, name: &str) -> Option<usize> {
        tags.rank(&WheelName::parse(name).expect(name))
    }

    #[test]
    fn binary_wheels_rank_before_pure_ones() {
        let tags = target(Subdir::Linux64).tags();
        let binary = rank(
            &tags,
            "numpy-2.0.0-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        )
        .unwrap();
        let pure = rank(&tags, "six-1.16.0-py3-none-any.whl").unwrap();
        assert!(binary < pure);
        let newer = rank(&tags, "a-1-cp312-cp312-manylinux_2_28_x86_64.whl").unwrap();
        assert!(newer < binary);
        let abi3 = rank(&tags, "a-1-cp38-abi3-manylinux_2_17_x86_64.whl").unwrap();
        assert!(binary < abi3 && abi3 < pure);
        let old = rank(&tags, "a-1-cp312-cp312-manylinux1_x86_64.whl").unwrap();
        assert!(binary < old && old < abi3);
        let compressed = rank(&tags, "six-1.16.0-py2.py3-none-any.whl").unwrap();
        assert_eq!(compressed, pure);
        assert!(rank(&tags, "a-1-cp312-none-any.whl").unwrap() < pure);
        assert!(rank(&tags, "a-1-py310-none-any.whl").unwrap() > pure);
    }

    #[test]
    fn incompatible_wheels_have_no_rank() {
        let tags = target(Subdir::Linux64).tags();
        for name in [
            "a-1-cp312-cp312-manylinux_2_34_x86_64.whl",
            "a-1-cp311-cp311-manylinux_2_17_x86_64.whl",
            "a-1-cp312-cp312-musllinux_1_2_x86_64.whl",
            "a-1-cp312-cp312-linux_x86_64.whl",
            "a-1-cp312-cp312-manylinux_2_17_aarch64.whl",
            "a-1-cp312-cp312-win_amd64.whl",
            "a-1-py2-none-any.whl",
            "a-1-cp313-abi3-manylinux_2_17_x86_64.whl",
        ] {
            assert_eq!(rank(&tags, name), None, "{name}");
        }
    }

    #[test]
    fn aarch64_stops_at_manylinux2014() {
        let t = target(Subdir::LinuxAarch64);
        let platforms = t.platform_tags();
        assert_eq!(platforms.first().unwrap(), "manylinux_2_28_aarch64");
        assert_eq!(platforms.last().unwrap(), "manylinux2014_aarch64");
        let tags = t.tags();
        assert!(rank(&tags, "a-1-cp312-cp312-manylinux2014_aarch64.whl").is_some());
        assert!(rank(&tags, "a-1-cp312-cp312-manylinux_2_17_x86_64.whl").is_none());
        assert!(rank(&tags, "a-1-cp312-cp312-manylinux2010_aarch64.whl").is_none());
        let ppc = target(Subdir::LinuxPpc64le).tags();
        assert!(rank(&ppc, "a-1-cp312-cp312-manylinux_2_17_ppc64le.whl").is_some());
    }

    #[test]
    fn x86_64_platforms_in_packaging_order() {
        let platforms = target(Subdir::Linux64).platform_tags();
        let pos = |t: &str| platforms.iter().position(|p| p == t).unwrap();
        assert_eq!(pos("manylinux_2_28_x86_64"), 0);
        assert_eq!(
            pos("manylinux2014_x86_64"),
            pos("manylinux_2_17_x86_64") + 1
        );
        assert_eq!(
            pos("manylinux2010_x86_64"),
            pos("manylinux_2_12_x86_64") + 1
        );
        assert_eq!(platforms.last().unwrap(), "manylinux1_x86_64");
        assert_eq!(platforms.len(), 24 + 3);
    }

    #[test]
    fn other_systems_take_pure_wheels_only() {
        let tags = target(Subdir::Osx64).tags();
        assert!(rank(&tags, "six-1.16.0-py3-none-any.whl").is_some());
        assert!(rank(&tags, "a-1-cp312-cp312-manylinux_2_17_x86_64.whl").is_none());
    }

    #[test]
    fn wheel_names_parse() {
        let w = WheelName::parse("Foo_Bar-1.0.post1-7abc-cp312-cp312-manylinux_2_17_x86_64.whl")
            .unwrap();
        assert_eq!(w.name.as_ref(), "foo-bar");
        assert_eq!(w.version.to_string(), "1.0.post1");
        assert_eq!(w.build_tag.as_deref(), Some("7abc"));
        assert!(!w.is_pure());
        let w = WheelName::parse("six-1.16.0-py2.py3-none-any.whl").unwrap();
        assert_eq!(w.build_tag, None);
        assert_eq!(w.python_tags, ["py2", "py3"]);
        assert!(w.is_pure());
        for bad in [
            "six-1.16.0-py3-none-any.zip",
            "six-1.16.0-py3-none.whl",
            "six-1.16.0-x-y-py3-none-any.whl",
            "six-notaversion-py3-none-any.whl",
            "six-1.0-abc-py3-none-any.whl",
            "a__b-1.0-py3-none-any.whl",
            "-1.0-py3-none-any.whl",
            "six-1.0-py3--any.whl",
        ] {
            assert!(WheelName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn markers_of_the_target() {
        let env = target(Subdir::Linux64).markers();
        let holds = |m: &str| {
            pep508_rs::MarkerTree::from_str(m)
                .unwrap()
                .evaluate(&env, &[])
        };
        assert!(holds("python_version >= '3.8' and sys_platform == 'linux'"));
        assert!(holds("platform_machine == 'x86_64' and os_name == 'posix'"));
        assert!(holds(
            "implementation_name == 'cpython' and python_full_version == '3.12.0'"
        ));
        assert!(holds(
            "platform_system == 'Linux' and platform_python_implementation == 'CPython'"
        ));
        assert!(!holds("python_version < '3.12'"));
        assert!(!holds("sys_platform == 'win32'"));
        let arm = target(Subdir::LinuxAarch64).markers();
        assert!(
            pep508_rs::MarkerTree::from_str("platform_machine == 'aarch64'")
                .unwrap()
                .evaluate(&arm, &[])
        );
    }
}
