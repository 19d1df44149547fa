//! A deterministic local channel shaped like conda-forge for the Binder base
//! environment (repo2docker's `repo2docker-base-py3.12`), for benchmarks.
//!
//! # Names, versions, graph
//!
//! The Binder packages (name, version, build, subdir) are those of
//! `locks/repo2docker-base-py3.12-linux-64.lock`; the requested specs are those
//! of `locks/repo2docker-base-py3.12.environment.yml`. Noarch packages whose
//! build starts with `pyh` are `noarch: python`, the other noarch ones
//! `noarch: generic`. The explicit lock has no dependencies, so a graph is
//! made that solves back to exactly the lock (one build per name):
//!
//! 1. plausible edges by kind: compiled `py3xx` builds depend on
//!    `python >=3.12,<3.13.0a0`, `python_abi 3.12.* *_cp312` and `libgcc`,
//!    `noarch: python` packages on `python >=3.9`, C libraries on `libgcc`;
//! 2. a hand-written table of the real conda-forge dependencies of the
//!    packages that matter (python on openssl, libzlib, ncurses, ...;
//!    jupyterlab on jupyter_server, ipykernel, ...);
//! 3. the real `depends` of `locks/rattler-numpy-lock.yml` for the names it
//!    has (kept with their version constraint when the channel's version
//!    satisfies it, else as a plain name);
//! 4. every package still unreachable from the requested ones becomes a
//!    dependency of a reachable package later in the lock (which is in
//!    dependency order), chosen from the seed among packages of the same kind
//!    when there is one.
//!
//! Edges only go to packages earlier in the lock, so the graph has no cycle.
//! Course extras (numpy, pandas, scipy, matplotlib-base, seaborn,
//! scikit-learn, sympy, statsmodels, plotly and their dependencies) come after
//! the Binder packages with plausible conda-forge versions and builds for
//! python 3.12 linux-64; no Binder package depends on them.
//!
//! # Size model
//!
//! Each package gets a template, a real installed-package record of
//! `conda-meta/` (file paths, sizes, path types, prefix placeholders and
//! their modes):
//!
//! - `python` gets python 3.11 (paths moved to 3.12 and linux names);
//! - compiled python extensions (`py3xx` builds) get numpy (its
//!   `site-packages/numpy` renamed after the package);
//! - `noarch: python` packages get pip (`site-packages/pip` renamed);
//! - C libraries get openssl, and ncurses for ncurses, tk and tzdata (data
//!   heavy, many small files, many symlinks);
//! - metapackages (`noarch: generic` packages but tzdata and ca-certificates,
//!   `_libgcc_mutex`, `libgcc-ng`, `libstdcxx-ng`, seaborn) have no files, as
//!   on conda-forge; ca-certificates gets `ssl/cacert.pem` and a symlink.
//!
//! Only regular files and symlinks of the records count (pip's pyc files,
//! compiled on install, and its Windows launchers are left out). A package's
//! installed size is the approximate size of the conda-forge linux-64
//! package from a table of about 120 names ([`SIZES_KB`]; python 90 MB,
//! nodejs 80 MB, babel 28 MB, jupyterlab 25 MB, ...), else its template's
//! own size when it is the template's package (numpy, pip, openssl,
//! ncurses), else a seeded log-uniform size by kind (noarch python
//! 40 KB-800 KB, compiled extension 300 KB-3 MB, C library 100 KB-2 MB). The
//! template's own package keeps all its files, sizes scaled to the target.
//! Another package `r` times the template's size takes `round(count * r^0.6)`
//! of its files (a seeded sample, with the largest file first but for pip,
//! and a file with a placeholder; beyond the template's count, files repeat
//! under new names), their sizes scaled together to reach the target, no
//! file above 16 MiB. `scale` multiplies every size (not the counts).
//! Symlinks are kept when their target is. At scale 1.0 the Binder environment holds about 490 MB (494 MB at
//! seed 7, 489 MB at seed 42) in about 35,600 files and symlinks, and the
//! whole channel, extras included, about 915 MB in 52,000 (see
//! [`model_size`]; the `realistic_channel` test prints it).
//!
//! # Contents
//!
//! Synthetic, from the seed: text files (by extension or text placeholder)
//! are lines of identifiers from a per-package vocabulary with numbers, and
//! compress about 3x with gzip; binary files mix random runs with repeated
//! per-package "instructions", strings and NUL padding, and compress about
//! 2.5x (files under 16 KB less, as real small files do). A file
//! whose template entry has a text placeholder holds it in its first line, a
//! binary one holds it as a NUL-terminated string with NUL padding.
//! Executables under `bin/` and shared libraries are 0o755.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::Path,
    str::FromStr,
};

use anyhow::{bail, Context, Result};
use rattler_conda_types::{MatchSpec, ParseStrictness, Version};

use crate::{
    index_channel, placeholder, write_package, ArchiveFormat, PackageSpec, PlaceholderMode, Rng,
};

/// A conda-forge-shaped channel: the Binder base environment's packages plus extras for courses.
#[derive(Debug, Clone)]
pub struct RealisticChannel {
    /// Every package to write (linux-64 and noarch).
    pub packages: Vec<PackageSpec>,
    /// The requested specs of the Binder base environment (as in repo2docker-base-py3.12.environment.yml).
    pub binder: Vec<String>,
    /// "name-version-build" of every package in the Binder base environment's linux-64 lock.
    pub binder_locked: Vec<String>,
    /// Ten course environments derived from it, overlapping as real courses do.
    pub courses: Vec<CourseEnv>,
    /// A package not in the Binder environment, to measure "one package added".
    pub extra_package: String,
}

/// One course environment: a name and its requested specs.
#[derive(Debug, Clone)]
pub struct CourseEnv {
    /// The course's name.
    pub name: String,
    /// Its requested specs.
    pub dependencies: Vec<String>,
}

/// Sizes of the size model, without generating any content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelSize {
    /// Bytes of regular files in the Binder environment's packages.
    pub binder_bytes: u64,
    /// Regular files and symlinks in the Binder environment's packages.
    pub binder_files: usize,
    /// Bytes of regular files in every package of the channel.
    pub total_bytes: u64,
    /// Regular files and symlinks in every package of the channel.
    pub total_files: usize,
}

/// Builds the channel model from the real data in `conda_data`; `scale` multiplies file sizes (1.0 = the size model's real sizes).
pub fn realistic_channel(conda_data: &Path, seed: u64, scale: f64) -> Result<RealisticChannel> {
    let model = Model::load(conda_data, seed, scale)?;
    let packages = model.plans.iter().map(materialize).collect();
    Ok(RealisticChannel {
        packages,
        binder: model.binder,
        binder_locked: model.binder_locked,
        courses: model.courses,
        extra_package: model.extra_package,
    })
}

/// The sizes the model gives at `seed` and `scale`, without generating contents.
pub fn model_size(conda_data: &Path, seed: u64, scale: f64) -> Result<ModelSize> {
    let model = Model::load(conda_data, seed, scale)?;
    let mut size = ModelSize {
        binder_bytes: 0,
        binder_files: 0,
        total_bytes: 0,
        total_files: 0,
    };
    for plan in &model.plans {
        let bytes: u64 = plan
            .files
            .iter()
            .filter(|f| f.link.is_none())
            .map(|f| f.size)
            .sum();
        size.total_bytes += bytes;
        size.total_files += plan.files.len();
        if plan.binder {
            size.binder_bytes += bytes;
            size.binder_files += plan.files.len();
        }
    }
    Ok(size)
}

/// Bytes of regular files (symlinks not counted) in every package of a channel.
pub fn total_size(channel: &RealisticChannel) -> u64 {
    channel
        .packages
        .iter()
        .flat_map(|p| &p.files)
        .filter(|f| !f.symlink)
        .map(|f| f.content.len() as u64)
        .sum()
}

/// Writes every package (.conda) into `dir` and indexes it (linux-64 + noarch).
///
/// Packages are compressed on as many threads as the machine has; this
/// blocks the calling task while they are written. [`write_package`] stages
/// every file in a temporary folder first: with tens of thousands of files
/// that costs more than compressing at small scales, so point `TMPDIR` at a
/// tmpfs (`/dev/shm`) to write several times faster.
pub async fn write_realistic_channel(dir: &Path, channel: &RealisticChannel) -> Result<()> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    // largest first, so that the threads finish together
    let mut order: Vec<usize> = (0..channel.packages.len()).collect();
    let size = |p: &PackageSpec| p.files.iter().map(|f| f.content.len()).sum::<usize>();
    order.sort_by_key(|&i| std::cmp::Reverse(size(&channel.packages[i])));
    let next = AtomicUsize::new(0);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let results: Vec<Result<()>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&p) = order.get(i) else {
                            return Ok(());
                        };
                        let spec = &channel.packages[p];
                        write_package(dir, spec, ArchiveFormat::Conda).with_context(|| {
                            format!("writing {}", spec.file_name(ArchiveFormat::Conda))
                        })?;
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a writer thread panicked")))
            })
            .collect()
    });
    for result in results {
        result?;
    }
    fs_err::create_dir_all(dir.join("linux-64"))?;
    index_channel(dir).await
}

// ---------------------------------------------------------------------------
// The model

const MAX_FILE: u64 = 16 << 20;
/// 2024-01-01 and 2025-10-15, the span of the build timestamps.
const FIRST_TIMESTAMP: i64 = 1_704_067_200;
const LAST_TIMESTAMP: i64 = 1_760_486_400;

/// Approximate installed sizes (KB) of conda-forge linux-64 packages.
pub const SIZES_KB: &[(&str, u64)] = &[
    // Binder: C and C++
    ("python", 90_000),
    ("nodejs", 80_000),
    ("icu", 38_000),
    ("libstdcxx", 16_000),
    ("libgcc", 3_000),
    ("libgomp", 1_500),
    ("ld_impl_linux-64", 2_000),
    ("krb5", 5_000),
    ("libsqlite", 1_700),
    ("tk", 8_000),
    ("zstd", 2_600),
    ("libuv", 1_100),
    ("zeromq", 2_400),
    ("libsodium", 900),
    ("readline", 1_000),
    ("libedit", 450),
    ("libxcrypt", 350),
    ("liblzma", 800),
    ("bzip2", 500),
    ("libzlib", 200),
    ("zlib", 250),
    ("libffi", 150),
    ("libexpat", 400),
    ("libnsl", 80),
    ("libuuid", 100),
    ("keyutils", 300),
    ("yaml", 500),
    ("tzdata", 1_900),
    ("ca-certificates", 300),
    ("_openmp_mutex", 30),
    // Binder: python
    ("babel", 28_000),
    ("jupyterlab", 25_000),
    ("notebook", 14_000),
    ("jupyterhub-base", 12_000),
    ("sqlalchemy", 12_000),
    ("debugpy", 11_000),
    ("pygments", 9_000),
    ("pydantic-core", 6_500),
    ("jedi", 6_000),
    ("cryptography", 5_500),
    ("widgetsnbextension", 5_000),
    ("setuptools", 4_500),
    ("ipython", 4_000),
    ("tornado", 3_500),
    ("pydantic", 3_500),
    ("prompt-toolkit", 3_000),
    ("jupyter_server", 2_300),
    ("zstandard", 2_200),
    ("jupyterlab_widgets", 1_700),
    ("nbconvert-core", 1_600),
    ("greenlet", 1_500),
    ("psutil", 1_500),
    ("pyzmq", 1_500),
    ("alembic", 1_500),
    ("pytz", 1_400),
    ("rpds-py", 1_200),
    ("brotli-python", 1_200),
    ("parso", 1_200),
    ("lark", 1_200),
    ("jupyter-resource-usage", 1_200),
    ("cffi", 1_200),
    ("pycparser", 1_000),
    ("jupyter-lsp", 900),
    ("beautifulsoup4", 900),
    ("jinja2", 900),
    ("anyio", 900),
    ("pyyaml", 800),
    ("oauthlib", 800),
    ("python-dateutil", 750),
    ("ipykernel", 700),
    ("jupyter_client", 700),
    ("traitlets", 700),
    ("jsonschema", 700),
    ("urllib3", 650),
    ("idna", 650),
    ("jsonschema-specifications", 600),
    ("nbformat", 600),
    ("mistune", 600),
    ("mako", 600),
    ("httpx", 600),
    ("charset-normalizer", 500),
    ("certifi", 350),
    ("wheel", 300),
    // course extras
    ("libopenblas", 36_000),
    ("libgfortran5", 4_000),
    ("libgfortran", 60),
    ("libblas", 40),
    ("libcblas", 40),
    ("liblapack", 40),
    ("pandas", 60_000),
    ("scipy", 62_000),
    ("matplotlib-base", 25_000),
    ("pillow", 4_000),
    ("freetype", 1_500),
    ("libpng", 800),
    ("libjpeg-turbo", 2_500),
    ("qhull", 2_300),
    ("contourpy", 800),
    ("fonttools", 11_000),
    ("kiwisolver", 250),
    ("cycler", 60),
    ("pyparsing", 1_000),
    ("python-tzdata", 1_100),
    ("seaborn-base", 1_100),
    ("statsmodels", 37_000),
    ("patsy", 1_100),
    ("scikit-learn", 32_000),
    ("joblib", 1_500),
    ("threadpoolctl", 150),
    ("sympy", 55_000),
    ("mpmath", 3_000),
    ("gmp", 2_100),
    ("mpfr", 1_800),
    ("mpc", 300),
    ("gmpy2", 900),
    ("plotly", 42_000),
    ("tenacity", 200),
];

/// Course extras: name, version, build, subdir, in dependency order.
const EXTRAS: &[(&str, &str, &str, &str)] = &[
    ("libgfortran5", "15.2.0", "hcd61629_7", "linux-64"),
    ("libgfortran", "15.2.0", "h69a702a_7", "linux-64"),
    ("libopenblas", "0.3.28", "pthreads_h94d23a6_1", "linux-64"),
    ("libblas", "3.9.0", "26_linux64_openblas", "linux-64"),
    ("libcblas", "3.9.0", "26_linux64_openblas", "linux-64"),
    ("liblapack", "3.9.0", "26_linux64_openblas", "linux-64"),
    ("libpng", "1.6.44", "hadc24fc_0", "linux-64"),
    ("freetype", "2.12.1", "h267a509_2", "linux-64"),
    ("libjpeg-turbo", "3.0.0", "hd590300_1", "linux-64"),
    ("qhull", "2020.2", "h434a139_5", "linux-64"),
    ("gmp", "6.3.0", "hac33072_2", "linux-64"),
    ("mpfr", "4.2.1", "h90cbb55_3", "linux-64"),
    ("mpc", "1.3.1", "h24ddda3_1", "linux-64"),
    ("numpy", "1.26.4", "py312heda63a1_0", "linux-64"),
    ("python-tzdata", "2024.2", "pyhd8ed1ab_1", "noarch"),
    ("cycler", "0.12.1", "pyhd8ed1ab_1", "noarch"),
    ("pyparsing", "3.2.0", "pyhd8ed1ab_2", "noarch"),
    ("kiwisolver", "1.4.7", "py312h68727a3_0", "linux-64"),
    ("fonttools", "4.55.3", "py312h178313f_1", "linux-64"),
    ("contourpy", "1.3.1", "py312h68727a3_0", "linux-64"),
    ("pillow", "11.0.0", "py312h7b63e92_0", "linux-64"),
    ("pandas", "2.2.3", "py312hf9745cd_1", "linux-64"),
    ("scipy", "1.14.1", "py312h62794b6_2", "linux-64"),
    ("matplotlib-base", "3.9.2", "py312hd3ec401_2", "linux-64"),
    ("patsy", "1.0.1", "pyhd8ed1ab_1", "noarch"),
    ("statsmodels", "0.14.4", "py312hc0a28a1_0", "linux-64"),
    ("seaborn-base", "0.13.2", "pyhd8ed1ab_3", "noarch"),
    ("seaborn", "0.13.2", "hd8ed1ab_3", "noarch"),
    ("joblib", "1.4.2", "pyhd8ed1ab_1", "noarch"),
    ("threadpoolctl", "3.5.0", "pyhc1e730c_0", "noarch"),
    ("scikit-learn", "1.5.2", "py312h7a48858_1", "linux-64"),
    ("mpmath", "1.3.0", "pyhd8ed1ab_1", "noarch"),
    ("gmpy2", "2.1.5", "py312h7201bc8_3", "linux-64"),
    ("sympy", "1.13.3", "pyh2585a3b_104", "noarch"),
    ("tenacity", "9.0.0", "pyhd8ed1ab_1", "noarch"),
    ("plotly", "5.24.1", "pyhd8ed1ab_1", "noarch"),
];

/// Real conda-forge run dependencies (names), for the Binder packages and
/// the extras. Kind-based ones (python, python_abi, libgcc) are added too.
#[rustfmt::skip]
const DEPENDS: &[(&str, &[&str])] = &[
    ("libgcc", &["_libgcc_mutex", "_openmp_mutex"]),
    ("libgcc-ng", &["libgcc"]),
    ("libstdcxx", &["libgcc"]),
    ("libstdcxx-ng", &["libstdcxx"]),
    ("_openmp_mutex", &["_libgcc_mutex", "libgomp"]),
    ("openssl", &["ca-certificates"]),
    ("libsqlite", &["libzlib"]),
    ("libedit", &["ncurses"]),
    ("readline", &["ncurses"]),
    ("tk", &["libzlib"]),
    ("zlib", &["libzlib"]),
    ("zstd", &["libstdcxx", "libzlib"]),
    ("icu", &["libstdcxx"]),
    ("krb5", &["keyutils", "libedit", "libstdcxx", "openssl"]),
    ("zeromq", &["krb5", "libsodium", "libstdcxx"]),
    ("python", &[
        "bzip2", "ld_impl_linux-64", "libexpat", "libffi", "libgcc", "liblzma", "libnsl", "libsqlite",
        "libuuid", "libxcrypt", "libzlib", "ncurses", "openssl", "readline", "tk", "tzdata",
    ]),
    ("nodejs", &["icu", "libstdcxx", "libuv", "libzlib", "openssl", "zlib"]),
    ("cpython", &["python", "python_abi"]),
    ("python-gil", &["cpython"]),
    ("_python_abi3_support", &["cpython", "python-gil"]),
    ("cached-property", &["cached_property"]),
    ("typing-extensions", &["typing_extensions"]),
    ("brotli-python", &["libstdcxx"]),
    ("debugpy", &["libstdcxx"]),
    ("greenlet", &["libstdcxx"]),
    ("cffi", &["libffi", "pycparser"]),
    ("cryptography", &["cffi", "openssl"]),
    ("pyyaml", &["yaml"]),
    ("pyzmq", &["_python_abi3_support", "libstdcxx", "zeromq"]),
    ("zstandard", &["cffi", "zstd"]),
    ("argon2-cffi-bindings", &["cffi"]),
    ("sqlalchemy", &["greenlet", "typing-extensions"]),
    ("pydantic-core", &["typing-extensions"]),
    ("pip", &["setuptools", "wheel"]),
    ("anyio", &["exceptiongroup", "idna", "sniffio", "typing_extensions"]),
    ("argon2-cffi", &["argon2-cffi-bindings"]),
    ("arrow", &["python-dateutil", "types-python-dateutil"]),
    ("async-lru", &["typing_extensions"]),
    ("beautifulsoup4", &["soupsieve", "typing-extensions"]),
    ("bleach", &["webencodings"]),
    ("bleach-with-css", &["bleach", "tinycss2"]),
    ("certipy", &["cryptography"]),
    ("alembic", &["mako", "sqlalchemy", "tomli", "typing_extensions"]),
    ("comm", &["traitlets"]),
    ("fqdn", &["cached-property"]),
    ("h2", &["hpack", "hyperframe"]),
    ("httpcore", &["anyio", "certifi", "h11", "h2", "sniffio"]),
    ("httpx", &["anyio", "certifi", "httpcore", "idna"]),
    ("importlib-metadata", &["zipp"]),
    ("ipykernel", &[
        "comm", "debugpy", "ipython", "jupyter_client", "jupyter_core", "matplotlib-inline", "nest-asyncio",
        "packaging", "psutil", "pyzmq", "tornado", "traitlets",
    ]),
    ("ipython", &[
        "decorator", "exceptiongroup", "ipython_pygments_lexers", "jedi", "matplotlib-inline", "pexpect",
        "prompt-toolkit", "pygments", "stack_data", "traitlets", "typing_extensions",
    ]),
    ("ipython_pygments_lexers", &["pygments"]),
    ("ipywidgets", &["comm", "ipython", "jupyterlab_widgets", "traitlets", "widgetsnbextension"]),
    ("isoduration", &["arrow"]),
    ("jedi", &["parso"]),
    ("jinja2", &["markupsafe"]),
    ("jsonschema", &["attrs", "jsonschema-specifications", "referencing", "rpds-py"]),
    ("jsonschema-specifications", &["referencing"]),
    ("jsonschema-with-format-nongpl", &[
        "fqdn", "idna", "isoduration", "jsonpointer", "jsonschema", "rfc3339-validator", "rfc3986-validator",
        "rfc3987-syntax", "uri-template", "webcolors",
    ]),
    ("jupyter_client", &[
        "importlib-metadata", "jupyter_core", "python-dateutil", "pyzmq", "tornado", "traitlets",
    ]),
    ("jupyter_core", &["platformdirs", "traitlets"]),
    ("jupyter_events", &[
        "jsonschema-with-format-nongpl", "packaging", "python-json-logger", "pyyaml", "referencing",
        "rfc3339-validator", "rfc3986-validator", "traitlets",
    ]),
    ("jupyter_server", &[
        "anyio", "argon2-cffi", "jinja2", "jupyter_client", "jupyter_core", "jupyter_events",
        "jupyter_server_terminals", "nbconvert-core", "nbformat", "overrides", "packaging",
        "prometheus_client", "pyzmq", "send2trash", "terminado", "tornado", "traitlets", "websocket-client",
    ]),
    ("jupyter_server_terminals", &["terminado"]),
    ("jupyter-lsp", &["importlib-metadata", "jupyter_server"]),
    ("jupyter-offlinenotebook", &["jupyter_server"]),
    ("jupyter-resource-usage", &["jupyter_server", "psutil", "pyzmq"]),
    ("jupyterhub-base", &[
        "alembic", "async_generator", "certipy", "importlib-metadata", "jinja2", "jupyter_events",
        "oauthlib", "packaging", "pamela", "prometheus_client", "pydantic", "python-dateutil", "requests",
        "sqlalchemy", "tornado", "traitlets",
    ]),
    ("jupyterhub-singleuser", &["jupyterhub-base", "jupyterlab"]),
    ("jupyterlab", &[
        "async-lru", "httpx", "importlib-metadata", "ipykernel", "jinja2", "jupyter-lsp", "jupyter_core",
        "jupyter_server", "jupyterlab_server", "notebook-shim", "packaging", "setuptools", "tomli",
        "tornado", "traitlets",
    ]),
    ("jupyterlab_server", &[
        "babel", "importlib-metadata", "jinja2", "json5", "jsonschema", "jupyter_server", "packaging",
        "requests",
    ]),
    ("mako", &["importlib-metadata", "markupsafe"]),
    ("matplotlib-inline", &["traitlets"]),
    ("mistune", &["typing_extensions"]),
    ("nbclient", &["jupyter_client", "jupyter_core", "nbformat", "traitlets"]),
    ("nbconvert-core", &[
        "beautifulsoup4", "bleach-with-css", "defusedxml", "importlib-metadata", "jinja2", "jupyter_core",
        "jupyterlab_pygments", "markupsafe", "mistune", "nbclient", "nbformat", "packaging", "pandocfilters",
        "pygments", "traitlets",
    ]),
    ("nbformat", &["jsonschema", "jupyter_core", "python-fastjsonschema", "traitlets"]),
    ("notebook", &["jupyter_server", "jupyterlab", "jupyterlab_server", "notebook-shim", "tornado"]),
    ("notebook-shim", &["jupyter_server"]),
    ("oauthlib", &["blinker", "cryptography", "pyjwt"]),
    ("overrides", &["typing_utils"]),
    ("pexpect", &["ptyprocess"]),
    ("prompt-toolkit", &["wcwidth"]),
    ("pydantic", &["annotated-types", "pydantic-core", "typing-extensions", "typing-inspection"]),
    ("python-dateutil", &["six"]),
    ("referencing", &["attrs", "rpds-py", "typing_extensions"]),
    ("requests", &["certifi", "charset-normalizer", "idna", "urllib3"]),
    ("rfc3339-validator", &["six"]),
    ("rfc3987-syntax", &["lark"]),
    ("stack_data", &["asttokens", "executing", "pure_eval"]),
    ("terminado", &["ptyprocess", "tornado"]),
    ("tinycss2", &["webencodings"]),
    ("typing-inspection", &["typing_extensions"]),
    ("urllib3", &["brotli-python", "h2", "pysocks", "zstandard"]),
    // extras
    ("libgfortran5", &["libgcc"]),
    ("libgfortran", &["libgfortran5"]),
    ("libopenblas", &["libgcc", "libgfortran", "libgfortran5"]),
    ("libblas", &["libopenblas"]),
    ("libcblas", &["libblas"]),
    ("liblapack", &["libblas"]),
    ("libpng", &["libzlib"]),
    ("freetype", &["libpng", "libzlib"]),
    ("qhull", &["libstdcxx"]),
    ("gmp", &["libstdcxx"]),
    ("mpfr", &["gmp"]),
    ("mpc", &["gmp", "mpfr"]),
    ("numpy", &["libblas", "libcblas", "liblapack", "libstdcxx"]),
    ("kiwisolver", &["libstdcxx"]),
    ("contourpy", &["libstdcxx", "numpy"]),
    ("pillow", &["freetype", "libjpeg-turbo", "libzlib", "tk"]),
    ("pandas", &["libstdcxx", "numpy", "python-dateutil", "python-tzdata", "pytz"]),
    ("scipy", &["libblas", "libcblas", "libgfortran", "libgfortran5", "liblapack", "libstdcxx", "numpy"]),
    ("matplotlib-base", &[
        "contourpy", "cycler", "fonttools", "freetype", "kiwisolver", "libstdcxx", "numpy", "packaging",
        "pillow", "pyparsing", "python-dateutil", "qhull", "tk",
    ]),
    ("patsy", &["numpy", "six"]),
    ("statsmodels", &["numpy", "packaging", "pandas", "patsy", "scipy"]),
    ("seaborn-base", &["matplotlib-base", "numpy", "pandas", "scipy"]),
    ("seaborn", &["seaborn-base", "statsmodels"]),
    ("joblib", &["setuptools"]),
    ("scikit-learn", &["_openmp_mutex", "joblib", "libstdcxx", "numpy", "scipy", "threadpoolctl"]),
    ("gmpy2", &["gmp", "mpc", "mpfr"]),
    ("sympy", &["cpython", "gmpy2", "mpmath"]),
    ("plotly", &["packaging", "tenacity"]),
];

/// Console scripts of some `noarch: python` packages.
#[rustfmt::skip]
const ENTRY_POINTS: &[(&str, &[&str])] = &[
    ("pip", &["pip = pip._internal.cli.main:main", "pip3 = pip._internal.cli.main:main"]),
    ("wheel", &["wheel = wheel._commands:main"]),
    ("pygments", &["pygmentize = pygments.cmdline:main"]),
    ("ipython", &["ipython = IPython:start_ipython", "ipython3 = IPython:start_ipython"]),
    ("jupyter_core", &["jupyter = jupyter_core.command:main"]),
    ("jupyter_server", &["jupyter-server = jupyter_server.serverapp:main"]),
    ("jupyterlab", &["jupyter-lab = jupyterlab.labapp:main", "jupyter-labextension = jupyterlab.labextensions:main"]),
    ("notebook", &["jupyter-notebook = notebook.app:main"]),
    ("nbconvert-core", &["jupyter-nbconvert = nbconvert.nbconvertapp:main"]),
    ("jupyterhub-base", &["jupyterhub-singleuser = jupyterhub.singleuser:main"]),
    ("sympy", &["isympy = isympy:main"]),
];

/// Linux packages without files (metapackages) on conda-forge.
const LINUX_METAPACKAGES: &[&str] = &["_libgcc_mutex", "libgcc-ng", "libstdcxx-ng"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Python,
    PyExt,
    NoarchPython,
    CLib,
    Meta,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TemplateId {
    Python,
    Numpy,
    Pip,
    Openssl,
    Ncurses,
}

#[derive(Debug, Clone)]
struct Locked {
    name: String,
    version: String,
    build: String,
    subdir: String,
}

#[derive(Debug, Clone)]
struct TemplateFile {
    path: String,
    size: u64,
    placeholder: Option<PlaceholderMode>,
}

#[derive(Debug, Clone)]
struct Template {
    name: &'static str,
    files: Vec<TemplateFile>,
    /// Symlinks: path and the index of their target in `files`.
    links: Vec<(String, usize)>,
}

#[derive(Debug, Clone)]
struct FilePlan {
    path: String,
    size: u64,
    mode: u32,
    text: bool,
    placeholder: Option<PlaceholderMode>,
    /// For a symlink: its (relative) target.
    link: Option<String>,
}

#[derive(Debug, Clone)]
struct PackagePlan {
    locked: Locked,
    kind: Kind,
    binder: bool,
    depends: Vec<String>,
    timestamp: i64,
    entry_points: Vec<String>,
    files: Vec<FilePlan>,
    seed: u64,
}

struct Model {
    plans: Vec<PackagePlan>,
    binder: Vec<String>,
    binder_locked: Vec<String>,
    courses: Vec<CourseEnv>,
    extra_package: String,
}

impl Model {
    fn load(conda_data: &Path, seed: u64, scale: f64) -> Result<Self> {
        if !(scale.is_finite() && scale > 0.0) {
            bail!("scale must be positive, not {scale}");
        }
        let locks = conda_data.join("locks");
        let lock_path = locks.join("repo2docker-base-py3.12-linux-64.lock");
        let lock_text = fs_err::read_to_string(&lock_path)
            .context("reading the Binder lock (is conda_data the conda-data folder?)")?;
        let binder_packages = parse_explicit_lock(&lock_text)
            .with_context(|| format!("parsing {}", lock_path.display()))?;
        let env_path = locks.join("repo2docker-base-py3.12.environment.yml");
        let binder = parse_environment(&fs_err::read_to_string(&env_path)?)
            .with_context(|| format!("parsing {}", env_path.display()))?;
        let numpy_lock = locks.join("rattler-numpy-lock.yml");
        let real_depends = parse_rattler_lock_depends(&fs_err::read_to_string(&numpy_lock)?)
            .with_context(|| format!("parsing {}", numpy_lock.display()))?;
        let templates = Templates::load(&conda_data.join("conda-meta"))?;

        let binder_count = binder_packages.len();
        let mut packages = binder_packages;
        for (name, version, build, subdir) in EXTRAS {
            if packages.iter().any(|p| p.name == *name) {
                continue; // already in the Binder environment
            }
            packages.push(Locked {
                name: name.to_string(),
                version: version.to_string(),
                build: build.to_string(),
                subdir: subdir.to_string(),
            });
        }
        let index: HashMap<String, usize> = packages
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name.clone(), i))
            .collect();
        if index.len() != packages.len() {
            bail!("the Binder lock has a name twice");
        }
        let requested: Vec<String> = binder.iter().map(|s| spec_name(s).to_string()).collect();
        for name in &requested {
            if !index.contains_key(name.as_str()) || index[name.as_str()] >= binder_count {
                bail!("requested package {name} is not in the Binder lock");
            }
        }
        let depends = dependency_graph(&packages, binder_count, &requested, &real_depends, seed)?;

        let binder_locked = packages[..binder_count]
            .iter()
            .map(|p| format!("{}-{}-{}", p.name, p.version, p.build))
            .collect();

        let step = (LAST_TIMESTAMP - FIRST_TIMESTAMP) / packages.len() as i64;
        let mut time_rng = Rng::new(seed ^ 0x7133_57a3_0000_0001);
        let mut used_paths = HashSet::new();
        let mut plans = Vec::with_capacity(packages.len());
        for (i, (locked, depends)) in packages.into_iter().zip(depends).enumerate() {
            let kind = kind_of(&locked);
            let package_seed = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ fnv1a(&locked.name);
            let mut rng = Rng::new(package_seed);
            let files = plan_files(&locked, kind, &templates, scale, &mut rng, &mut used_paths);
            let entry_points = if kind == Kind::NoarchPython {
                lookup(ENTRY_POINTS, &locked.name)
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            } else {
                Vec::new()
            };
            plans.push(PackagePlan {
                timestamp: FIRST_TIMESTAMP + i as i64 * step + time_rng.below(step as u64) as i64,
                locked,
                kind,
                binder: i < binder_count,
                depends,
                entry_points,
                files,
                seed: package_seed,
            });
        }

        let courses = courses(&binder);
        for course in &courses {
            for spec in &course.dependencies {
                if !index.contains_key(spec_name(spec)) {
                    bail!(
                        "course {} requests {spec}, which the channel lacks",
                        course.name
                    );
                }
            }
        }
        Ok(Self {
            plans,
            binder,
            binder_locked,
            courses,
            extra_package: "sympy".into(),
        })
    }
}

fn lookup<T: Copy + Default>(table: &[(&str, T)], name: &str) -> T {
    table
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
        .unwrap_or_default()
}

/// FNV-1a, to derive per-package seeds from names.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A uniform number in [0, 1).
fn unit(rng: &mut Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

fn kind_of(p: &Locked) -> Kind {
    if p.name == "python" {
        Kind::Python
    } else if p.subdir == "noarch" {
        if p.build.starts_with("pyh") {
            Kind::NoarchPython
        } else if matches!(p.name.as_str(), "tzdata" | "ca-certificates") {
            Kind::CLib
        } else {
            Kind::Meta
        }
    } else if LINUX_METAPACKAGES.contains(&p.name.as_str()) {
        Kind::Meta
    } else if p.build.starts_with("py3") {
        Kind::PyExt
    } else {
        Kind::CLib
    }
}

/// The package name of a spec (`python=3.12.*`, `ipywidgets==8.*`, `numpy >=1`).
fn spec_name(spec: &str) -> &str {
    let end = spec
        .find(|c: char| c.is_whitespace() || "=<>!~[".contains(c))
        .unwrap_or(spec.len());
    &spec[..end]
}

// ---------------------------------------------------------------------------
// Reading the real data

fn parse_explicit_lock(text: &str) -> Result<Vec<Locked>> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with('@') {
            continue;
        }
        let url = line.split('#').next().unwrap_or(line);
        let mut parts = url.rsplitn(3, '/');
        let file = parts.next().context("a URL without a file name")?;
        let subdir = parts
            .next()
            .with_context(|| format!("no subdir in {url}"))?;
        let stem = file
            .strip_suffix(".conda")
            .or_else(|| file.strip_suffix(".tar.bz2"))
            .with_context(|| format!("{file} is not a conda package"))?;
        let mut fields = stem.rsplitn(3, '-');
        let (Some(build), Some(version), Some(name)) =
            (fields.next(), fields.next(), fields.next())
        else {
            bail!("{file} is not NAME-VERSION-BUILD");
        };
        out.push(Locked {
            name: name.into(),
            version: version.into(),
            build: build.into(),
            subdir: subdir.into(),
        });
    }
    if out.is_empty() {
        bail!("no package URL");
    }
    Ok(out)
}

fn parse_environment(text: &str) -> Result<Vec<String>> {
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(text)?;
    let deps = yaml
        .get("dependencies")
        .and_then(|d| d.as_sequence())
        .context("no dependencies list")?;
    deps.iter()
        .map(|d| {
            d.as_str()
                .map(|s| s.trim().to_string())
                .context("a dependency that is not a string")
        })
        .collect()
}

/// name -> depends of the linux-64 (or noarch) records of a rattler lock (v4).
fn parse_rattler_lock_depends(text: &str) -> Result<HashMap<String, Vec<String>>> {
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(text)?;
    let packages = yaml
        .get("packages")
        .and_then(|p| p.as_sequence())
        .context("no packages list")?;
    let mut out = HashMap::new();
    for p in packages {
        let (Some(name), Some(subdir)) = (
            p.get("name").and_then(|n| n.as_str()),
            p.get("subdir").and_then(|s| s.as_str()),
        ) else {
            continue;
        };
        if subdir != "linux-64" || out.contains_key(name) {
            continue;
        }
        let depends = p
            .get("depends")
            .and_then(|d| d.as_sequence())
            .map(|d| {
                d.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        out.insert(name.to_string(), depends);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// The dependency graph

fn dependency_graph(
    packages: &[Locked],
    binder_count: usize,
    requested: &[String],
    real: &HashMap<String, Vec<String>>,
    seed: u64,
) -> Result<Vec<Vec<String>>> {
    let index: HashMap<&str, usize> = packages
        .iter()
        .enumerate()
        .map(|(i, p)| (p.name.as_str(), i))
        .collect();
    let mut graph: Vec<BTreeMap<String, String>> = vec![BTreeMap::new(); packages.len()];
    for (i, p) in packages.iter().enumerate() {
        let deps = &mut graph[i];
        let mut add = |name: &str, spec: String| {
            if index.get(name).is_some_and(|&j| j < i) {
                deps.entry(name.to_string()).or_insert(spec);
            }
        };
        match kind_of(p) {
            Kind::PyExt => {
                add("python", "python >=3.12,<3.13.0a0".into());
                add("python_abi", "python_abi 3.12.* *_cp312".into());
                add("libgcc", "libgcc >=14".into());
            }
            Kind::NoarchPython => add("python", "python >=3.9".into()),
            Kind::CLib if p.subdir != "noarch" => add("libgcc", "libgcc >=14".into()),
            _ => {}
        }
        for name in lookup(DEPENDS, &p.name) {
            add(name, name.to_string());
        }
        for spec in real.get(&p.name).into_iter().flatten() {
            let name = spec_name(spec);
            let Some(&j) = index.get(name) else { continue };
            add(name, real_spec(spec, name, &packages[j].version));
        }
    }

    // make every Binder package reachable from the requested ones
    let closure = |graph: &[BTreeMap<String, String>], reached: &mut Vec<bool>, start: usize| {
        let mut stack = vec![start];
        while let Some(i) = stack.pop() {
            if std::mem::replace(&mut reached[i], true) {
                continue;
            }
            stack.extend(graph[i].keys().map(|n| index[n.as_str()]));
        }
    };
    let mut reached = vec![false; packages.len()];
    for name in requested {
        closure(&graph, &mut reached, index[name.as_str()]);
    }
    let mut rng = Rng::new(seed ^ 0x6772_6170_6800_0000);
    for i in (0..binder_count).rev() {
        if reached[i] {
            continue;
        }
        let kind = kind_of(&packages[i]);
        let candidates: Vec<usize> = (i + 1..binder_count).filter(|&j| reached[j]).collect();
        let plausible = |j: &usize| {
            let other = kind_of(&packages[*j]);
            match kind {
                Kind::CLib | Kind::Meta => matches!(other, Kind::CLib | Kind::PyExt | Kind::Python),
                _ => other == kind,
            }
        };
        let preferred: Vec<usize> = candidates.iter().copied().filter(plausible).collect();
        let pool = if preferred.is_empty() {
            &candidates
        } else {
            &preferred
        };
        if pool.is_empty() {
            bail!(
                "{} cannot be made reachable: nothing requested after it in the lock",
                packages[i].name
            );
        }
        let parent = pool[rng.below(pool.len() as u64) as usize];
        let name = packages[i].name.clone();
        graph[parent].insert(name.clone(), name);
        closure(&graph, &mut reached, i);
    }
    Ok(graph
        .into_iter()
        .map(|d| d.into_values().collect())
        .collect())
}

/// A real dependency spec, kept when the channel's version satisfies it.
fn real_spec(spec: &str, name: &str, version: &str) -> String {
    let Ok(parsed) = MatchSpec::from_str(spec, ParseStrictness::Lenient) else {
        return name.to_string();
    };
    let Some(constraint) = parsed.version else {
        return name.to_string();
    };
    match Version::from_str(version) {
        Ok(v) if constraint.matches(&v) => format!("{name} {constraint}"),
        _ => name.to_string(),
    }
}

// ---------------------------------------------------------------------------
// Courses

fn courses(binder: &[String]) -> Vec<CourseEnv> {
    let python = binder
        .iter()
        .find(|s| spec_name(s) == "python")
        .cloned()
        .unwrap_or_else(|| "python=3.12".into());
    let with_binder = |extra: &[&str]| -> Vec<String> {
        binder
            .iter()
            .cloned()
            .chain(extra.iter().map(|s| s.to_string()))
            .collect()
    };
    let subset = |specs: &[&str]| -> Vec<String> {
        std::iter::once(python.clone())
            .chain(specs.iter().map(|s| s.to_string()))
            .collect()
    };
    let course = |name: &str, dependencies: Vec<String>| CourseEnv {
        name: name.into(),
        dependencies,
    };
    vec![
        course(
            "intro-python",
            subset(&["jupyterlab", "numpy", "matplotlib-base"]),
        ),
        course(
            "data-science",
            with_binder(&[
                "numpy",
                "pandas",
                "matplotlib-base",
                "scipy",
                "scikit-learn",
                "seaborn",
            ]),
        ),
        course(
            "plotting",
            subset(&[
                "jupyterlab",
                "numpy",
                "matplotlib-base",
                "plotly",
                "seaborn",
            ]),
        ),
        course(
            "statistics",
            with_binder(&["pandas", "scipy", "statsmodels", "matplotlib-base"]),
        ),
        course("symbolic-math", subset(&["notebook", "sympy", "numpy"])),
        course(
            "machine-learning",
            with_binder(&["numpy", "pandas", "scikit-learn", "matplotlib-base"]),
        ),
        course(
            "numerical-methods",
            subset(&[
                "jupyterlab",
                "ipywidgets",
                "numpy",
                "scipy",
                "sympy",
                "matplotlib-base",
            ]),
        ),
        course("exam-intro", subset(&["jupyterlab", "numpy"])),
        course(
            "widgets",
            subset(&["jupyterlab", "ipywidgets", "matplotlib-base", "plotly"]),
        ),
        course("notebook-only", subset(&["notebook"])),
    ]
}

// ---------------------------------------------------------------------------
// Templates and file plans

struct Templates {
    python: Template,
    numpy: Template,
    pip: Template,
    openssl: Template,
    ncurses: Template,
}

impl Templates {
    fn load(dir: &Path) -> Result<Self> {
        Ok(Self {
            python: load_template(
                dir,
                "python-3.11.9-h932a869_0_cpython.json",
                "python",
                |_| true,
            )?,
            numpy: load_template(dir, "numpy-1.26.4-py311h7125741_0.json", "numpy", |_| true)?,
            // the package's files; not the pyc files compiled on install or
            // the Windows entry points
            pip: load_template(dir, "pip-23.0-pyhd8ed1ab_0.json", "pip", |p| {
                p.starts_with("site-packages/")
            })?,
            openssl: load_template(dir, "openssl-3.3.0-hfb2fe0b_3.json", "openssl", |_| true)?,
            ncurses: load_template(dir, "ncurses-6.5-hb89a1cb_0.json", "ncurses", |_| true)?,
        })
    }

    fn get(&self, id: TemplateId) -> &Template {
        match id {
            TemplateId::Python => &self.python,
            TemplateId::Numpy => &self.numpy,
            TemplateId::Pip => &self.pip,
            TemplateId::Openssl => &self.openssl,
            TemplateId::Ncurses => &self.ncurses,
        }
    }
}

fn load_template(
    dir: &Path,
    file: &str,
    name: &'static str,
    keep: impl Fn(&str) -> bool,
) -> Result<Template> {
    let path = dir.join(file);
    let record: serde_json::Value = serde_json::from_str(&fs_err::read_to_string(&path)?)
        .with_context(|| format!("parsing {}", path.display()))?;
    let entries = record
        .pointer("/paths_data/paths")
        .and_then(|p| p.as_array())
        .with_context(|| format!("{} has no paths_data.paths", path.display()))?;
    let mut files = Vec::new();
    let mut by_sha = HashMap::new();
    let mut links = Vec::new();
    for entry in entries {
        let p = entry
            .get("_path")
            .and_then(|p| p.as_str())
            .with_context(|| format!("an entry of {} without _path", path.display()))?;
        if !keep(p) {
            continue;
        }
        let sha = entry
            .get("sha256")
            .and_then(|s| s.as_str())
            .unwrap_or_default();
        match entry.get("path_type").and_then(|t| t.as_str()) {
            Some("hardlink") => {
                let placeholder = match (
                    entry.get("prefix_placeholder").is_some(),
                    entry.get("file_mode").and_then(|m| m.as_str()),
                ) {
                    (true, Some("binary")) => Some(PlaceholderMode::Binary),
                    (true, _) => Some(PlaceholderMode::Text),
                    _ => None,
                };
                by_sha.entry(sha.to_string()).or_insert(files.len());
                files.push(TemplateFile {
                    path: p.to_string(),
                    size: entry
                        .get("size_in_bytes")
                        .and_then(|s| s.as_u64())
                        .unwrap_or(0),
                    placeholder,
                });
            }
            Some("softlink") => links.push((p.to_string(), sha.to_string())),
            _ => {}
        }
    }
    // a symlink's sha256 is its target's: that finds the target
    let links = links
        .into_iter()
        .filter_map(|(p, sha)| by_sha.get(&sha).map(|&i| (p, i)))
        .collect();
    if files.is_empty() {
        bail!("{} has no files", path.display());
    }
    Ok(Template { name, files, links })
}

fn template_of(p: &Locked, kind: Kind) -> Option<TemplateId> {
    match kind {
        Kind::Python => Some(TemplateId::Python),
        Kind::PyExt => Some(TemplateId::Numpy),
        Kind::NoarchPython => Some(TemplateId::Pip),
        Kind::CLib if matches!(p.name.as_str(), "ncurses" | "tk" | "tzdata") => {
            Some(TemplateId::Ncurses)
        }
        Kind::CLib => Some(TemplateId::Openssl),
        Kind::Meta => None,
    }
}

/// The python module a package installs.
fn module_name(name: &str) -> String {
    let known = [
        ("ipython", "IPython"),
        ("pyyaml", "yaml"),
        ("beautifulsoup4", "bs4"),
        ("pyjwt", "jwt"),
        ("python-dateutil", "dateutil"),
        ("pyzmq", "zmq"),
        ("jupyterhub-base", "jupyterhub"),
        ("nbconvert-core", "nbconvert"),
        ("matplotlib-base", "matplotlib"),
        ("seaborn-base", "seaborn"),
        ("brotli-python", "brotli"),
        ("scikit-learn", "sklearn"),
        ("python-json-logger", "pythonjsonlogger"),
        ("python-fastjsonschema", "fastjsonschema"),
        ("python-tzdata", "tzdata"),
        ("rpds-py", "rpds"),
        ("pillow", "PIL"),
        ("argon2-cffi", "argon2"),
        ("argon2-cffi-bindings", "_argon2_cffi_bindings"),
    ];
    known
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, m)| m.to_string())
        .unwrap_or_else(|| name.replace(['-', '.'], "_"))
}

fn plan_files(
    p: &Locked,
    kind: Kind,
    templates: &Templates,
    scale: f64,
    rng: &mut Rng,
    used: &mut HashSet<String>,
) -> Vec<FilePlan> {
    if p.name == "ca-certificates" {
        let size = ((290_000.0 * scale).round() as u64).max(1);
        let mut files = vec![FilePlan {
            path: dedupe("ssl/cacert.pem", &p.name, used),
            size,
            mode: 0o644,
            text: true,
            placeholder: None,
            link: None,
        }];
        files.push(FilePlan {
            path: dedupe("ssl/cert.pem", &p.name, used),
            size: 0,
            mode: 0o777,
            text: false,
            placeholder: None,
            link: Some("cacert.pem".into()),
        });
        return files;
    }
    let Some(id) = template_of(p, kind) else {
        return Vec::new();
    };
    let template = templates.get(id);
    let own = template.name == p.name;
    let candidates: Vec<usize> = (0..template.files.len())
        .filter(|&i| {
            let path = &template.files[i].path;
            match (id, p.name.as_str()) {
                (TemplateId::Ncurses, "tzdata") => path.starts_with("share/"),
                (TemplateId::Numpy, name) => name == "numpy" || !path.starts_with("bin/"),
                _ => true,
            }
        })
        .collect();
    let template_total: u64 = candidates.iter().map(|&i| template.files[i].size).sum();
    let target_kb = lookup(SIZES_KB, &p.name);
    let target = if target_kb > 0 {
        target_kb as f64 * 1000.0
    } else if own {
        template_total as f64
    } else {
        let (lo, hi): (f64, f64) = match kind {
            Kind::NoarchPython => (40e3, 800e3),
            Kind::PyExt => (300e3, 3e6),
            _ => (100e3, 2e6),
        };
        (lo.ln() + unit(rng) * (hi.ln() - lo.ln())).exp()
    };
    let count = candidates.len();
    let ratio = target / template_total.max(1) as f64;
    let n = if own {
        count
    } else {
        ((count as f64 * ratio.powf(0.6)).round() as usize).clamp(count.min(2), count * 8)
    };

    // a seeded order, with the largest file (the library) and a file with a
    // placeholder first
    let mut order = candidates.clone();
    for i in (1..order.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    let mut forced = Vec::new();
    if id != TemplateId::Pip {
        if let Some(&largest) = candidates
            .iter()
            .max_by_key(|&&i| (template.files[i].size, std::cmp::Reverse(i)))
        {
            forced.push(largest);
        }
    }
    if let Some(&ph) = order
        .iter()
        .find(|&&i| template.files[i].placeholder.is_some())
    {
        if !forced.contains(&ph) {
            forced.push(ph);
        }
    }
    order.retain(|i| !forced.contains(i));
    forced.extend(order);
    let order = forced;
    let picks: Vec<(usize, usize)> = (0..n).map(|j| (order[j % count], j / count)).collect();

    // sizes: scaled together to the target, none above MAX_FILE
    let raw: Vec<f64> = picks
        .iter()
        .map(|&(i, _)| template.files[i].size as f64)
        .collect();
    let goal = target * scale;
    let mut capped = vec![false; picks.len()];
    let mut factor;
    loop {
        let capped_bytes = capped.iter().filter(|c| **c).count() as f64 * MAX_FILE as f64;
        let free_raw: f64 = raw
            .iter()
            .zip(&capped)
            .filter(|(_, c)| !**c)
            .map(|(r, _)| r)
            .sum();
        factor = if free_raw > 0.0 {
            ((goal - capped_bytes) / free_raw).max(0.0)
        } else {
            0.0
        };
        let mut changed = false;
        for (r, c) in raw.iter().zip(capped.iter_mut()) {
            if !*c && r * factor > MAX_FILE as f64 {
                *c = true;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }

    let names = Names::new(p);
    let mut files = Vec::with_capacity(picks.len());
    let mut final_paths: HashMap<(usize, usize), String> = HashMap::new();
    for (k, &(i, copy)) in picks.iter().enumerate() {
        let tf = &template.files[i];
        let renamed = with_copy(&rename(id, own, &tf.path, &names), copy);
        let path = dedupe(&renamed, &p.name, used);
        let mut size = if capped[k] {
            MAX_FILE
        } else {
            (raw[k] * factor).round() as u64
        };
        if tf.placeholder.is_some() {
            size = size.max(placeholder().len() as u64 + 64);
        }
        let text = match tf.placeholder {
            Some(PlaceholderMode::Text) => true,
            Some(PlaceholderMode::Binary) => false,
            None => is_text(&path),
        };
        files.push(FilePlan {
            mode: mode_of(&path),
            path: path.clone(),
            size,
            text,
            placeholder: tf.placeholder,
            link: None,
        });
        final_paths.insert((i, copy), path);
    }
    for (link, target) in &template.links {
        for copy in 0..n.div_ceil(count.max(1)) {
            let Some(target_path) = final_paths.get(&(*target, copy)) else {
                continue;
            };
            let renamed = with_copy(&rename(id, own, link, &names), copy);
            let path = dedupe(&renamed, &p.name, used);
            files.push(FilePlan {
                link: Some(relative(&path, target_path)),
                path,
                size: 0,
                mode: 0o777,
                text: false,
                placeholder: None,
            });
        }
    }
    files
}

struct Names {
    name: String,
    module: String,
    lib: String,
    version: String,
}

impl Names {
    fn new(p: &Locked) -> Self {
        Self {
            name: p.name.clone(),
            module: module_name(&p.name),
            lib: if p.name.starts_with("lib") {
                p.name.clone()
            } else {
                format!("lib{}", p.name)
            },
            version: p.version.clone(),
        }
    }
}

/// A template path moved to linux and to the package's own names.
fn rename(id: TemplateId, own: bool, path: &str, n: &Names) -> String {
    let (name, module, lib, version) = (&n.name, &n.module, &n.lib, &n.version);
    let renamed = match id {
        TemplateId::Python => path
            .replace(
                "_sysconfigdata__darwin_darwin",
                "_sysconfigdata__linux_x86_64-linux-gnu",
            )
            .replace(
                "_sysconfigdata_arm64_apple_darwin20_0_0",
                "_sysconfigdata_x86_64_conda_linux_gnu",
            )
            .replace("-darwin", "-x86_64-linux-gnu")
            .replace("libpython3.11.dylib", "libpython3.12.so.1.0")
            .replace("3.11", "3.12")
            .replace("311", "312"),
        TemplateId::Numpy => path
            .replace(
                "lib/python3.11/site-packages/numpy-1.26.4.dist-info/",
                &format!("lib/python3.12/site-packages/{module}-{version}.dist-info/"),
            )
            .replace(
                "lib/python3.11/site-packages/numpy/",
                &format!("lib/python3.12/site-packages/{module}/"),
            )
            .replace("-darwin.so", "-x86_64-linux-gnu.so")
            .replace("311", "312")
            .replace("3.11", "3.12"),
        TemplateId::Pip => path
            .replace(
                "site-packages/pip-23.0-py3.11.egg-info/",
                &format!("site-packages/{module}-{version}.dist-info/"),
            )
            .replace("site-packages/pip/", &format!("site-packages/{module}/")),
        TemplateId::Openssl if own => path.to_string(),
        TemplateId::Openssl => {
            let tokens = [
                ("libcrypto", lib.clone()),
                ("libssl", format!("{lib}_ssl")),
                ("OpenSSL", name.clone()),
                ("openssl", name.clone()),
            ];
            let path = match path.strip_prefix("ssl/") {
                Some(rest) => format!("share/{name}/{rest}"),
                None => path.to_string(),
            };
            replace_or_localize(&path, &tokens, name)
        }
        TemplateId::Ncurses if own => path.to_string(),
        TemplateId::Ncurses if name == "tzdata" => path
            .replace("share/terminfo/", "share/zoneinfo/")
            .replace("share/tabset/", "share/zoneinfo/posix/"),
        TemplateId::Ncurses => {
            let tokens = [
                ("libncurses", lib.clone()),
                ("libtinfo", format!("{lib}_tinfo")),
                ("libform", format!("{lib}_form")),
                ("libmenu", format!("{lib}_menu")),
                ("libpanel", format!("{lib}_panel")),
                ("ncurses", name.clone()),
            ];
            replace_or_localize(path, &tokens, name)
        }
    };
    linux_library(&renamed)
}

/// Replaces the template's names; a path with none gets the package's name.
fn replace_or_localize(path: &str, tokens: &[(&str, String)], name: &str) -> String {
    let mut out = path.to_string();
    for (from, to) in tokens {
        out = out.replace(from, to);
    }
    if out != path || out.contains(name) {
        return out;
    }
    let parts: Vec<&str> = out.split('/').collect();
    match parts.as_slice() {
        [dir, file] => format!("{dir}/{name}-{file}"),
        [first, rest @ ..] => format!("{first}/{name}/{}", rest.join("/")),
        [] => out,
    }
}

/// `libfoo.3.dylib` -> `libfoo.so.3`, `libfoo.dylib` -> `libfoo.so`.
fn linux_library(path: &str) -> String {
    let Some(stem) = path.strip_suffix(".dylib") else {
        return path.to_string();
    };
    match stem.rsplit_once('.') {
        Some((base, v))
            if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) && !base.ends_with('/') =>
        {
            format!("{base}.so.{v}")
        }
        _ => format!("{stem}.so"),
    }
}

/// The `copy`-th repetition of a template file: `dir/name_2.ext`.
fn with_copy(path: &str, copy: usize) -> String {
    if copy == 0 {
        return path.to_string();
    }
    let (dir, file) = path.rsplit_once('/').map_or(("", path), |(d, f)| (d, f));
    let split = file[1..].find('.').map_or(file.len(), |i| i + 1);
    let file = format!("{}_{}{}", &file[..split], copy + 1, &file[split..]);
    if dir.is_empty() {
        file
    } else {
        format!("{dir}/{file}")
    }
}

/// A path no other package (or file) has taken yet.
fn dedupe(path: &str, name: &str, used: &mut HashSet<String>) -> String {
    if used.insert(path.to_string()) {
        return path.to_string();
    }
    let moved = match path.split_once('/') {
        Some((first, rest)) => format!("{first}/{name}/{rest}"),
        None => format!("{name}/{path}"),
    };
    if used.insert(moved.clone()) {
        return moved;
    }
    (2..)
        .map(|k| format!("{moved}.{k}"))
        .find(|candidate| used.insert(candidate.clone()))
        .unwrap_or(moved)
}

/// The target of a symlink at `link` to `target`, relative to the link's folder.
fn relative(link: &str, target: &str) -> String {
    let from: Vec<&str> = link.split('/').collect();
    let from = &from[..from.len() - 1];
    let to: Vec<&str> = target.split('/').collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<&str> = vec![".."; from.len() - common];
    parts.extend(&to[common..]);
    parts.join("/")
}

fn mode_of(path: &str) -> u32 {
    let file = path.rsplit('/').next().unwrap_or(path);
    if path.starts_with("bin/") || file.ends_with(".so") || file.contains(".so.") {
        0o755
    } else {
        0o644
    }
}

fn is_text(path: &str) -> bool {
    let file = path.rsplit('/').next().unwrap_or(path);
    const TEXT: &[&str] = &[
        "py", "pyi", "h", "hpp", "c", "cpp", "txt", "md", "rst", "json", "cfg", "cnf", "pc",
        "cmake", "pl", "sh", "in", "toml", "yml", "yaml", "js", "css", "html", "csv", "dist",
        "typed", "pem", "tcl", "orig", "mk", "f", "pxd", "pyx", "ini", "xml", "svg", "map",
    ];
    const TEXT_NAMES: &[&str] = &[
        "METADATA",
        "RECORD",
        "WHEEL",
        "INSTALLER",
        "REQUESTED",
        "LICENSE",
        "Makefile",
        "Setup",
        "makesetup",
        "install-sh",
        "AUTHORS",
        "NOTICE",
        "COPYING",
    ];
    match file.rsplit_once('.') {
        Some((_, ext)) => TEXT.contains(&ext) || TEXT_NAMES.iter().any(|n| file.starts_with(n)),
        None => TEXT_NAMES.iter().any(|n| file.starts_with(n)),
    }
}

// ---------------------------------------------------------------------------
// Contents

fn materialize(plan: &PackagePlan) -> PackageSpec {
    let l = &plan.locked;
    let mut spec = PackageSpec::new(&l.name, &l.version);
    match plan.kind {
        Kind::NoarchPython => spec = spec.noarch("python"),
        _ if l.subdir == "noarch" => spec = spec.noarch("generic"),
        _ => {}
    }
    spec.build = l.build.clone();
    spec.subdir = l.subdir.clone();
    spec = spec.timestamp(plan.timestamp);
    for d in &plan.depends {
        spec = spec.depends(d);
    }
    for e in &plan.entry_points {
        spec = spec.entry_point(e);
    }
    let mut rng = Rng::new(plan.seed ^ 0x636f_6e74_656e_7473);
    let vocab = Vocabulary::new(&mut rng);
    for f in &plan.files {
        if let Some(target) = &f.link {
            spec = spec.symlink(&f.path, target);
            continue;
        }
        let len = f.size as usize;
        let content = if f.text {
            vocab.text(
                &mut rng,
                len,
                f.placeholder.is_some(),
                f.path.starts_with("bin/"),
            )
        } else {
            vocab.binary(&mut rng, len, f.placeholder.is_some(), f.mode == 0o755)
        };
        spec = match f.placeholder {
            Some(how) => spec.prefix_file(&f.path, content, f.mode, how),
            None => spec.file(&f.path, content, f.mode),
        };
    }
    spec
}

/// A package's words: identifiers for text, "instructions" for binaries.
struct Vocabulary {
    words: Vec<Vec<u8>>,
    codes: Vec<Vec<u8>>,
}

#[rustfmt::skip]
const KEYWORDS: &[&str] = &[
    "def", "self", "return", "import", "from", "if", "else", "None", "for", "in", "the", "class",
    "is", "not", "and", "or", "with", "as", "raise", "True", "False", "int", "const", "char",
    "struct", "void", "static", "value", "name", "data", "path", "type", "args", "kwargs",
    "result", "error",
];

impl Vocabulary {
    fn new(rng: &mut Rng) -> Self {
        let mut words: Vec<Vec<u8>> = KEYWORDS.iter().map(|k| k.as_bytes().to_vec()).collect();
        while words.len() < 300 {
            let len = 3 + rng.below(10) as usize;
            let word = (0..len)
                .map(|_| b"abcdefghijklmnopqrstuvwxyz_eeetaoinsr"[rng.below(37) as usize])
                .collect();
            words.push(word);
        }
        let codes = (0..160)
            .map(|_| {
                let len = 4 + rng.below(25) as usize;
                let mut c = Vec::with_capacity(len + 8);
                while c.len() < len {
                    c.extend_from_slice(&rng.next_u64().to_le_bytes());
                }
                c.truncate(len);
                c
            })
            .collect();
        Self { words, codes }
    }

    /// Lines of identifiers, separators and numbers; with the placeholder in
    /// the first line (a shebang for scripts) when asked.
    fn text(&self, rng: &mut Rng, len: usize, with_placeholder: bool, script: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 64);
        if with_placeholder {
            let first = if script {
                format!("#!{}/bin/python3.12\n", placeholder())
            } else {
                format!("prefix = \"{}\"\n", placeholder())
            };
            out.extend_from_slice(first.as_bytes());
        }
        const SEPARATORS: &[&[u8]] = &[
            b" ", b" ", b" ", b".", b"(", b"), ", b", ", b" = ", b": ", b"_",
        ];
        while out.len() < len {
            let r = rng.next_u64();
            let indent = (r % 4) as usize * 4;
            out.extend(std::iter::repeat_n(b' ', indent));
            let tokens = 2 + (r >> 8) % 9;
            for t in 0..tokens {
                let r = rng.next_u64();
                if r & 0xff < 13 {
                    // a number: digits the compressor cannot guess
                    let digits = 2 + (r >> 8) % 9;
                    let mut v = r >> 16;
                    for _ in 0..digits {
                        out.push(b'0' + (v % 10) as u8);
                        v /= 10;
                    }
                } else {
                    out.extend_from_slice(
                        &self.words[((r >> 8) % self.words.len() as u64) as usize],
                    );
                }
                if t + 1 < tokens {
                    out.extend_from_slice(
                        SEPARATORS[((r >> 40) % SEPARATORS.len() as u64) as usize],
                    );
                }
            }
            out.push(b'\n');
        }
        out.truncate(len.max(if with_placeholder {
            placeholder().len() + 16
        } else {
            0
        }));
        out
    }

    /// Machine-code-like bytes: random runs, repeated instructions, strings
    /// and padding; with the placeholder as a NUL-padded C string when asked.
    fn binary(&self, rng: &mut Rng, len: usize, with_placeholder: bool, elf: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 64);
        if elf && len >= 64 {
            out.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x03\0\x3e\0\x01\0\0\0");
        }
        while out.len() < len {
            let r = rng.next_u64();
            match r % 16 {
                0..=3 => {
                    let run = 4 + ((r >> 8) % 21) as usize;
                    let end = out.len() + run;
                    while out.len() < end {
                        out.extend_from_slice(&rng.next_u64().to_le_bytes());
                    }
                    out.truncate(end);
                }
                4..=12 => out
                    .extend_from_slice(&self.codes[((r >> 8) % self.codes.len() as u64) as usize]),
                13 => {
                    out.extend_from_slice(
                        &self.words[((r >> 8) % self.words.len() as u64) as usize],
                    );
                    out.push(0);
                }
                _ => out.extend(std::iter::repeat_n(0u8, 4 + ((r >> 8) % 28) as usize)),
            }
        }
        out.truncate(len);
        if with_placeholder {
            let mut text = placeholder().into_bytes();
            text.extend_from_slice(b"/lib\0");
            text.extend(std::iter::repeat_n(0u8, 11));
            if out.len() < text.len() {
                out.resize(text.len(), 0);
            }
            let at = (out.len() - text.len()) / 3;
            out[at..at + text.len()].copy_from_slice(&text);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_move_to_linux_and_the_package() {
        assert_eq!(linux_library("lib/libcrypto.3.dylib"), "lib/libcrypto.so.3");
        assert_eq!(linux_library("lib/libssl.dylib"), "lib/libssl.so");
        assert_eq!(with_copy("include/x/obj_mac.h", 1), "include/x/obj_mac_2.h");
        assert_eq!(with_copy("bin/.keep", 2), "bin/.keep_3");
        assert_eq!(
            relative("include/ncurses/curses.h", "include/curses.h"),
            "../curses.h"
        );
        assert_eq!(relative("bin/python", "bin/python3.12"), "python3.12");
        assert_eq!(spec_name("ipywidgets==8.*"), "ipywidgets");
        assert_eq!(spec_name("python=3.12.*"), "python");
        assert_eq!(
            real_spec("ncurses >=6.3,<7.0a0", "ncurses", "6.5"),
            "ncurses >=6.3,<7.0a0"
        );
        assert_eq!(
            real_spec("python >=3.9,<3.10.0a0", "python", "3.12.12"),
            "python"
        );
        let n = Names {
            name: "libuv".into(),
            module: "libuv".into(),
            lib: "libuv".into(),
            version: "1".into(),
        };
        assert_eq!(
            rename(TemplateId::Openssl, false, "lib/libcrypto.3.dylib", &n),
            "lib/libuv.so.3"
        );
        assert_eq!(
            rename(TemplateId::Openssl, false, "bin/c_rehash", &n),
            "bin/libuv-c_rehash"
        );
        assert_eq!(
            rename(TemplateId::Openssl, false, "include/openssl/ssl.h", &n),
            "include/libuv/ssl.h"
        );
    }
}
