//! `trousse-bench`: trousse's build figures on a conda-forge-shaped channel,
//! side by side in one run with the floor (extract + gzip once) and with the
//! usual way (`docker build` and `docker push`). Prints a table and writes JSON.

mod docker;
mod images;
mod measure;
mod registry;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context};
use clap::Parser;
use serde_json::{json, Value};
use trousse_builder::{
    progress::silent, BuildOptions, BuildReport, BuildRequest, Compression, EnvSpec, ImageSettings,
    ResolveOptions, Source,
};
use trousse_registry_client::{ImageRef, RegistryOptions};
use trousse_testkit::realistic::{realistic_channel, write_realistic_channel, RealisticChannel};

use crate::{
    images::{registry_breakdown, registry_bytes, ImageBlobs},
    measure::{timed, timed_blocking, Figure},
};

#[derive(Parser)]
#[command(about = "Measure trousse side by side with the floor and with docker build")]
struct Args {
    /// File sizes relative to the real packages (1.0: the size model's real sizes).
    #[arg(long, default_value_t = 0.25)]
    scale: f64,
    /// Runs per timed trousse scenario and of the floor.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Runs of each docker build and docker push scenario (each takes about a minute here).
    #[arg(long, default_value_t = 1)]
    docker_runs: usize,
    /// Where caches, images and the channel go (default: the system's temporary directory).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Where the JSON report goes.
    #[arg(long, default_value = "target/bench/report.json")]
    json: PathBuf,
    /// Leave out the docker build and docker push comparisons.
    #[arg(long)]
    skip_docker: bool,
    /// Seed of the channel's synthetic contents.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Keep the channel in this directory and reuse it when it was written with the same seed and scale.
    #[arg(long)]
    channel: Option<PathBuf>,
}

/// The benchmark's working state: the channel and a scratch directory.
struct Bench {
    work: tempfile::TempDir,
    channel_dir: PathBuf,
    channel: RealisticChannel,
    runs: usize,
    docker_runs: usize,
    counter: std::cell::Cell<usize>,
}

impl Bench {
    fn path(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    /// A fresh path under the work directory.
    fn fresh(&self, prefix: &str) -> PathBuf {
        let n = self.counter.get();
        self.counter.set(n + 1);
        self.path(&format!("{prefix}-{n}"))
    }

    /// Writes a spec over the channel, on scratch (the same base for every contender).
    fn spec(&self, name: &str, dependencies: &[String]) -> anyhow::Result<PathBuf> {
        let path = self.path(&format!("{name}.yml"));
        let mut text = format!(
            "name: {name}\nchannels: ['{}']\ndependencies:\n",
            self.channel_dir.display()
        );
        for d in dependencies {
            text.push_str(&format!("  - \"{d}\"\n"));
        }
        text.push_str("trousse:\n  base: scratch\n");
        std::fs::write(&path, text)?;
        Ok(path)
    }

    /// One trousse build of a spec into an OCI layout.
    async fn build(&self, spec: &Path, cache: &Path, output: &Path) -> anyhow::Result<BuildReport> {
        self.build_compressed(spec, cache, output, Compression::Gzip)
            .await
    }

    /// One trousse build of a spec into an OCI layout, with this layer compression.
    async fn build_compressed(
        &self,
        spec: &Path,
        cache: &Path,
        output: &Path,
        compression: Compression,
    ) -> anyhow::Result<BuildReport> {
        let defaults = ImageSettings {
            base: ImageRef::Scratch,
            ..ImageSettings::default()
        };
        let spec = EnvSpec::from_path(spec, &defaults)?;
        let options = BuildOptions {
            mirrors: Default::default(),
            post_build_network: false,
            max_image_bytes: None,
            cache_dir: cache.to_path_buf(),
            compression,
            output: ImageRef::Oci {
                dir: output.to_path_buf(),
                tag: None,
            },
            reporter: silent(),
            registry: RegistryOptions::default(),
        };
        build_spec(spec, options).await
    }

    /// Times `runs` builds of a spec, each on a cache prepared by `prepare`.
    async fn time_builds(
        &self,
        spec: &Path,
        prepare: impl Fn(&Path) -> anyhow::Result<()>,
    ) -> anyhow::Result<(Figure, BuildReport, PathBuf)> {
        let mut runs = Vec::new();
        let mut last = None;
        for _ in 0..self.runs {
            let cache = self.fresh("cache");
            prepare(&cache)?;
            settle();
            let output = self.fresh("image");
            let (seconds, report) = timed(self.build(spec, &cache, &output)).await;
            runs.push(seconds);
            last = Some((report?, output));
        }
        let (report, output) = last.context("no runs")?;
        Ok((Figure::of(runs), report, output))
    }

    /// The channel file of a package (`NAME-VERSION-BUILD.conda`).
    fn archive(&self, file_name: &str) -> anyhow::Result<PathBuf> {
        for subdir in ["linux-64", "noarch"] {
            let path = self.channel_dir.join(subdir).join(file_name);
            if path.is_file() {
                return Ok(path);
            }
        }
        bail!("{file_name} is not in the channel")
    }
}

/// A copy of a cache that shares its files (hard links): a warm cache per run, in milliseconds.
fn clone_cache(from: &Path, to: &Path) -> anyhow::Result<()> {
    let status = Command::new("cp").arg("-al").arg(from).arg(to).status()?;
    if !status.success() {
        bail!("cp -al {} {} failed", from.display(), to.display());
    }
    Ok(())
}

/// The floor: extract every archive and gzip its files once (level 6, as
/// trousse does), on as many threads as there are cores, each taking the
/// next archive. Returns the seconds and the compressed bytes.
fn extract_and_gzip(bench: &Bench, archives: &[PathBuf]) -> anyhow::Result<(f64, u64)> {
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    let target = bench.fresh("floor");
    std::fs::create_dir_all(&target)?;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let next = AtomicUsize::new(0);
    let compressed = AtomicU64::new(0);
    let (seconds, result) = timed_blocking(|| {
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| -> anyhow::Result<()> {
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(archive) = archives.get(i) else {
                                return Ok(());
                            };
                            let dir = target.join(i.to_string());
                            rattler_package_streaming::fs::extract(archive, &dir)?;
                            let gz = flate2::GzBuilder::new()
                                .write(ByteCounter::default(), flate2::Compression::new(6));
                            let mut tar = tar::Builder::new(gz);
                            tar.follow_symlinks(false);
                            tar.append_dir_all(".", &dir)?;
                            let counted = tar.into_inner()?.finish()?;
                            compressed.fetch_add(counted.0, Ordering::Relaxed);
                        }
                    })
                })
                .collect();
            handles.into_iter().try_for_each(|h| {
                h.join()
                    .unwrap_or_else(|_| bail!("a floor thread panicked"))
            })
        })
    });
    result?;
    // the files stay until the work directory goes: deleting them here would
    // slow the next scenario (the disk discards freed blocks as it goes)
    Ok((seconds, compressed.into_inner()))
}

/// A writer that keeps only the count of bytes written to it.
#[derive(Default)]
struct ByteCounter(u64);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Builds the ten course environments on one cache; their images' blobs.
async fn build_courses(
    bench: &Bench,
    cache: &Path,
    compression: Compression,
) -> anyhow::Result<Vec<(String, ImageBlobs)>> {
    let mut courses = Vec::new();
    for course in &bench.channel.courses {
        let spec = bench.spec(&course.name, &course.dependencies)?;
        let layout = bench.fresh(&course.name);
        bench
            .build_compressed(&spec, cache, &layout, compression)
            .await?;
        courses.push((course.name.clone(), ImageBlobs::read(&layout).await?));
    }
    Ok(courses)
}

/// Lets the previous scenario's writes reach the disk, so they do not slow the next one.
fn settle() {
    let _ = Command::new("sync").status();
}

/// Unpacks an image's layers (in order) into a directory: the installed environment.
fn unpack_image(layout: &Path, into: &Path) -> anyhow::Result<()> {
    let index: Value = serde_json::from_slice(&std::fs::read(layout.join("index.json"))?)?;
    let blob = |digest: &str| {
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .context("index.json names no manifest")?;
    let manifest: Value = serde_json::from_slice(&std::fs::read(blob(manifest_digest))?)?;
    for layer in manifest["layers"].as_array().context("no layers")? {
        let digest = layer["digest"].as_str().context("layer without digest")?;
        let file = std::fs::File::open(blob(digest))?;
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
        archive.set_preserve_permissions(true);
        archive.set_overwrite(true);
        archive.unpack(into)?;
    }
    Ok(())
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let conda_data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conda-data");
    let channel = realistic_channel(&conda_data, args.seed, args.scale)
        .with_context(|| format!("reading {}", conda_data.display()))?;
    let started = std::time::Instant::now();
    let measure_docker = !args.skip_docker && docker::available();
    if measure_docker && !registry::LocalRegistry::installed() {
        bail!(
            "the docker push comparison needs Debian's docker-registry \
             (apt-get install docker-registry, or scripts/bench), or pass --skip-docker"
        );
    }
    let work = match &args.work_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            tempfile::Builder::new()
                .prefix("trousse-bench-")
                .tempdir_in(dir)?
        }
        None => tempfile::Builder::new()
            .prefix("trousse-bench-")
            .tempdir()?,
    };
    let channel_dir = args
        .channel
        .clone()
        .unwrap_or_else(|| work.path().join("channel"));
    let stamp = channel_dir.join(".trousse-bench");
    let identity = format!("seed {} scale {}\n", args.seed, args.scale);
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(identity.as_str()) {
        eprintln!("reusing the channel in {}", channel_dir.display());
    } else {
        eprintln!(
            "writing the channel ({} packages, scale {})...",
            channel.packages.len(),
            args.scale
        );
        if channel_dir.exists() {
            std::fs::remove_dir_all(&channel_dir)
                .with_context(|| format!("removing {}", channel_dir.display()))?;
        }
        // writing the channel stages ~50,000 files one by one: in memory when it can (not measured)
        let previous_tmpdir = std::env::var_os("TMPDIR");
        if Path::new("/dev/shm").is_dir() {
            std::env::set_var("TMPDIR", "/dev/shm");
        }
        let written = write_realistic_channel(&channel_dir, &channel).await;
        match previous_tmpdir {
            Some(dir) => std::env::set_var("TMPDIR", dir),
            None => std::env::remove_var("TMPDIR"),
        }
        written?;
        std::fs::write(&stamp, &identity)?;
    }
    let bench = Bench {
        work,
        channel_dir,
        channel,
        runs: args.runs.max(1),
        docker_runs: args.docker_runs.max(1),
        counter: std::cell::Cell::new(0),
    };
    let mut figures: BTreeMap<&str, Value> = BTreeMap::new();
    let mut table: Vec<(String, String)> = Vec::new();
    let binder = bench.spec("binder", &bench.channel.binder)?;

    // 1. cold build (empty cache, solve included) and 2. the floor, alternated
    // run by run so both see the same machine, each after a sync
    eprintln!(
        "[{:5.0} s] cold builds and the floor...",
        started.elapsed().as_secs_f64()
    );
    let archives = bench
        .channel
        .binder_locked
        .iter()
        .map(|id| {
            bench
                .archive(&format!("{id}.conda"))
                .or_else(|_| bench.archive(&format!("{id}.tar.bz2")))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut cold_runs = Vec::new();
    let mut floor_runs = Vec::new();
    let mut stage_runs: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut cold_report = None;
    for _ in 0..bench.runs {
        settle();
        let (seconds, report) =
            timed(bench.build(&binder, &bench.fresh("cache"), &bench.fresh("image"))).await;
        let report = report?;
        cold_runs.push(seconds);
        for (stage, s) in &report.seconds {
            stage_runs
                .entry(stage.name().to_string())
                .or_default()
                .push(*s);
        }
        cold_report = Some(report);
        settle();
        floor_runs.push(extract_and_gzip(&bench, &archives)?.0);
    }
    let cold = Figure::of(cold_runs);
    let cold_report = cold_report.context("no runs")?;
    let warm = bench.path("warm-cache");
    bench.build(&binder, &warm, &bench.fresh("image")).await?;
    table.push((
        format!(
            "cold build of the Binder environment ({} packages, {} layers, {})",
            cold_report.packages,
            cold_report.layers,
            mb(cold_report.bytes)
        ),
        cold.text(),
    ));
    let stages: BTreeMap<String, Figure> = stage_runs
        .into_iter()
        .map(|(stage, runs)| (stage, Figure::of(runs)))
        .collect();
    for (stage, figure) in &stages {
        table.push((format!("  of which {stage}"), figure.text()));
    }
    figures.insert("cold_build", json!({"seconds": cold, "stages": stages, "packages": cold_report.packages, "layers": cold_report.layers, "bytes": cold_report.bytes}));

    let floor = Figure::of(floor_runs);
    table.push((
        "floor: extract every archive and gzip its bytes once".into(),
        floor.text(),
    ));
    let pair_ratios = Figure::of(
        cold.runs
            .iter()
            .zip(&floor.runs)
            .map(|(c, f)| c / f)
            .collect(),
    );
    table.push((
        "  cold build / floor (medians)".into(),
        format!("{:.3}x", cold.median / floor.median),
    ));
    table.push((
        "  cold build / floor, run by run: median (min, max)".into(),
        pair_ratios.text(),
    ));
    figures.insert(
        "floor",
        json!({"seconds": floor, "cold_over_floor": cold.median / floor.median, "cold_over_floor_by_run": pair_ratios}),
    );

    // 3. the same environment again
    let (again, again_report, binder_image) = bench
        .time_builds(&binder, |c| clone_cache(&warm, c))
        .await?;
    table.push((
        format!(
            "the same environment again ({} of {} layers cached)",
            again_report.cached_layers, again_report.layers
        ),
        again.text(),
    ));
    figures.insert(
        "same_again",
        json!({"seconds": again, "cached_layers": again_report.cached_layers}),
    );

    // 4. one package added
    let mut plus_one = bench.channel.binder.clone();
    plus_one.push(bench.channel.extra_package.clone());
    let plus_one_spec = bench.spec("binder-plus-one", &plus_one)?;
    let (added, added_report, plus_one_image) = bench
        .time_builds(&plus_one_spec, |c| clone_cache(&warm, c))
        .await?;
    table.push((
        format!(
            "one package added ({}: {} of {} layers cached)",
            bench.channel.extra_package, added_report.cached_layers, added_report.layers
        ),
        added.text(),
    ));
    figures.insert("one_package_added", json!({"seconds": added, "cached_layers": added_report.cached_layers, "layers": added_report.layers}));
    // what a hub node holding the environment pulls for it with one package more
    let held = ImageBlobs::read(&binder_image).await?;
    let wanted = ImageBlobs::read(&plus_one_image).await?;
    let node_pulls = wanted.bytes_missing_from(&held);
    table.push((
        "  a node holding the environment pulls, of the new image (one layer: all of it)".into(),
        format!("{} of {}", mb(node_pulls), mb(wanted.bytes())),
    ));
    figures.insert(
        "one_package_added_pull",
        json!({"node_pulls_bytes": node_pulls, "image_bytes": wanted.bytes()}),
    );

    // 5. the ten courses, on one cache that then holds every package
    eprintln!(
        "[{:5.0} s] course environments...",
        started.elapsed().as_secs_f64()
    );
    let all = bench.path("all-cache");
    clone_cache(&warm, &all)?;
    let courses = build_courses(&bench, &all, Compression::Gzip).await?;
    let images: Vec<ImageBlobs> = courses.iter().map(|(_, b)| b.clone()).collect();
    let stored = registry_bytes(&images);
    let breakdown = registry_breakdown(&images);
    let one_layer_per_image: u64 = images.iter().map(ImageBlobs::bytes).sum();
    let mut unique_packages = std::collections::BTreeSet::new();
    for image in &images {
        unique_packages.extend(image.packages.iter().cloned());
    }
    let unique_archives = unique_packages
        .iter()
        .map(|p| bench.archive(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let unique_package_bytes: u64 = unique_archives
        .iter()
        .map(|a| Ok(std::fs::metadata(a)?.len()))
        .collect::<anyhow::Result<Vec<u64>>>()?
        .into_iter()
        .sum();
    let (_, unique_gzip_bytes) = extract_and_gzip(&bench, &unique_archives)?;
    let zstd_images: Vec<ImageBlobs> = build_courses(&bench, &all, Compression::Zstd)
        .await?
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    let stored_zstd = registry_bytes(&zstd_images);
    let second_pull = images[1].bytes_missing_from(&images[0]);
    table.push((
        format!(
            "ten courses: registry bytes, layered per package ({} unique packages)",
            unique_packages.len()
        ),
        mb(stored),
    ));
    for (kind, (bytes, count)) in &breakdown {
        table.push((
            format!("    of which {} ({count} blobs)", kind.name()),
            mb(*bytes),
        ));
    }
    table.push((
        "  the same images as one layer each".into(),
        mb(one_layer_per_image),
    ));
    table.push((
        "  unique package archive bytes".into(),
        mb(unique_package_bytes),
    ));
    table.push((
        "  registry bytes / unique package bytes".into(),
        format!("{:.3}x", stored as f64 / unique_package_bytes as f64),
    ));
    table.push((
        "  unique packages, each gzipped once (the layers' own compression)".into(),
        mb(unique_gzip_bytes),
    ));
    table.push((
        "  registry bytes / unique packages gzipped once".into(),
        format!("{:.3}x", stored as f64 / unique_gzip_bytes as f64),
    ));
    table.push((
        "  registry bytes with zstd layers (--compression zstd)".into(),
        mb(stored_zstd),
    ));
    table.push((
        "  registry bytes with zstd layers / unique package bytes".into(),
        format!("{:.3}x", stored_zstd as f64 / unique_package_bytes as f64),
    ));
    table.push((
        format!(
            "  a node holding {} pulls for {}",
            courses[0].0, courses[1].0
        ),
        format!("{} of {}", mb(second_pull), mb(images[1].bytes())),
    ));
    figures.insert("ten_courses", json!({
        "registry_bytes": stored,
        "registry_breakdown": breakdown.iter().map(|(k, (bytes, count))| (k.name(), json!({"bytes": bytes, "blobs": count}))).collect::<BTreeMap<_, _>>(),
        "one_layer_per_image_bytes": one_layer_per_image,
        "unique_package_bytes": unique_package_bytes, "unique_packages": unique_packages.len(),
        "unique_packages_gzipped_once_bytes": unique_gzip_bytes,
        "registry_bytes_zstd": stored_zstd,
        "ratios": {
            "registry_over_unique_packages": stored as f64 / unique_package_bytes as f64,
            "registry_over_unique_packages_gzipped_once": stored as f64 / unique_gzip_bytes as f64,
            "registry_zstd_over_unique_packages": stored_zstd as f64 / unique_package_bytes as f64,
        },
        "second_course_pull_bytes": second_pull, "second_course_bytes": images[1].bytes(),
        "courses": courses.iter().map(|(n, b)| json!({"name": n, "bytes": b.bytes(), "layers": b.layers.len()})).collect::<Vec<_>>(),
    }));

    // 6. a new combination of cached packages: each run one never built before
    let mut combination_runs = Vec::new();
    let mut combination_packages = 0;
    for run in 0..bench.runs {
        let mut deps = bench.channel.binder.clone();
        for course in bench
            .channel
            .courses
            .iter()
            .skip(run % bench.channel.courses.len())
            .take(2)
        {
            deps.extend(course.dependencies.iter().cloned());
        }
        deps.push(bench.channel.extra_package.clone());
        deps.sort();
        deps.dedup();
        let spec = bench.spec(&format!("combination-{run}"), &deps)?;
        let cache = bench.fresh("cache");
        clone_cache(&all, &cache)?;
        settle();
        let (seconds, report) = timed(bench.build(&spec, &cache, &bench.fresh("image"))).await;
        let report = report?;
        combination_packages = report.packages;
        combination_runs.push(seconds);
    }
    let combination = Figure::of(combination_runs);
    table.push((format!("a new combination of cached packages ({combination_packages} packages, solve included)"), combination.text()));
    figures.insert(
        "new_combination",
        json!({"seconds": combination, "packages": combination_packages}),
    );

    // 7. the usual way
    if !measure_docker {
        table.push((
            "docker build / docker push".into(),
            "not measured (no Docker Engine or --skip-docker)".into(),
        ));
    } else {
        eprintln!(
            "[{:5.0} s] docker build and push...",
            started.elapsed().as_secs_f64()
        );
        if let Err(e) = usual_way(
            &bench,
            &binder,
            &plus_one_spec,
            &warm,
            &cold,
            &again,
            &added,
            &mut table,
            &mut figures,
        )
        .await
        {
            eprintln!("the docker comparison failed: {e:#}");
            table.push((
                "docker build / docker push".into(),
                format!("failed: {e:#}"),
            ));
            figures.insert("docker", json!({"error": format!("{e:#}")}));
        }
    }

    println!("\n{:<96} seconds: median (min, max), or bytes", "scenario");
    for (what, value) in &table {
        println!("{what:<96} {value}");
    }
    let report = json!({
        "date": today(),
        "scale": args.scale, "runs": bench.runs, "docker_runs": bench.docker_runs, "seed": args.seed,
        "work_dir": bench.work.path().display().to_string(),
        "benchmark_seconds": started.elapsed().as_secs_f64(),
        "machine": {"cpus": std::thread::available_parallelism().map_or(0, |n| n.get())},
        "figures": figures,
    });
    if let Some(parent) = args.json.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.json, serde_json::to_string_pretty(&report)?)?;
    eprintln!(
        "wrote {} ({:.1} minutes in all)",
        args.json.display(),
        started.elapsed().as_secs_f64() / 60.0
    );
    Ok(())
}

/// Today's date from the system's `date` (reports only; nothing built depends on it).
fn today() -> String {
    Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

#[allow(clippy::too_many_arguments)]
async fn usual_way(
    bench: &Bench,
    binder: &Path,
    plus_one_spec: &Path,
    warm: &Path,
    cold: &Figure,
    again: &Figure,
    added: &Figure,
    table: &mut Vec<(String, String)>,
    figures: &mut BTreeMap<&str, Value>,
) -> anyhow::Result<()> {
    // the installed environments, as trousse's images hold them
    let base_layout = bench.fresh("docker-src");
    bench.build(binder, warm, &base_layout).await?;
    // contexts in memory when possible: unpacking them is setup, not measured
    let shm = Path::new("/dev/shm");
    let context_root = tempfile::Builder::new()
        .prefix("trousse-bench-context-")
        .tempdir_in(if shm.is_dir() { shm } else { bench.work.path() })?;
    let ctx = context_root.path().join("binder");
    std::fs::create_dir_all(&ctx)?;
    unpack_image(&base_layout, &ctx)?;
    let plus_layout = bench.fresh("docker-src");
    bench.build(plus_one_spec, warm, &plus_layout).await?;
    let plus_ctx = context_root.path().join("binder-plus-one");
    std::fs::create_dir_all(&plus_ctx)?;
    unpack_image(&plus_layout, &plus_ctx)?;

    let tag = "trousse-bench/binder:latest";
    // the image of the last cold build, kept for the push comparison
    let pushed = "trousse-bench/binder:pushed";
    let context = docker::BuildContext::new(&ctx, "")?;
    let plus_context = docker::BuildContext::new(&plus_ctx, "")?;
    let mut cold_runs = Vec::new();
    let mut added_runs = Vec::new();
    let mut cached_runs = Vec::new();
    let mut one_line_runs = Vec::new();
    for run in 0..bench.docker_runs {
        docker::remove_images(&[tag]);
        cold_runs.push(context.build(tag, true)?);
        docker::tag(tag, pushed)?;
        cached_runs.push(context.build(tag, false)?);
        added_runs.push(plus_context.build(tag, false)?);
        let one_line = docker::BuildContext::new(&ctx, &format!("ENV COURSE=run-{run}\n"))?;
        one_line_runs.push(one_line.build(tag, false)?);
        docker::BuildContext::new(&ctx, "")?;
    }
    let docker_cold = Figure::of(cold_runs);
    let docker_cached = Figure::of(cached_runs);
    let docker_added = Figure::of(added_runs);
    let docker_one_line = Figure::of(one_line_runs);
    table.push((
        "docker build --no-cache of the same environment (COPY onto scratch)".into(),
        docker_cold.text(),
    ));
    table.push((
        "  trousse cold build / docker build".into(),
        format!("{:.3}x", cold.median / docker_cold.median),
    ));
    table.push((
        "docker build again, nothing changed (cached)".into(),
        docker_cached.text(),
    ));
    table.push((
        "  trousse same again / docker cached".into(),
        format!("{:.3}x", again.median / docker_cached.median),
    ));
    table.push((
        "docker build with one package added (the COPY layer is rebuilt)".into(),
        docker_added.text(),
    ));
    table.push((
        "  trousse one package added / docker".into(),
        format!("{:.3}x", added.median / docker_added.median),
    ));
    table.push((
        "docker build after a one-line Dockerfile change (ENV)".into(),
        docker_one_line.text(),
    ));

    // pushes to a fresh local registry each run
    let mut docker_push_runs = Vec::new();
    let mut trousse_push_runs = Vec::new();
    for _ in 0..bench.docker_runs {
        let registry = registry::LocalRegistry::start(&bench.fresh("registry"))?;
        docker_push_runs.push(docker::push(
            pushed,
            &format!("{}/bench/docker:1", registry.host),
        )?);
        let output = ImageRef::Registry {
            reference: format!("{}/bench/trousse:1", registry.host),
        };
        let defaults = ImageSettings {
            base: ImageRef::Scratch,
            ..ImageSettings::default()
        };
        let spec = EnvSpec::from_path(binder, &defaults)?;
        let cache = bench.fresh("cache");
        clone_cache(warm, &cache)?;
        let options = BuildOptions {
            mirrors: Default::default(),
            post_build_network: false,
            max_image_bytes: None,
            cache_dir: cache,
            compression: Compression::Gzip,
            output,
            reporter: silent(),
            registry: RegistryOptions::default(),
        };
        let (seconds, report) = timed(build_spec(spec, options)).await;
        report?;
        trousse_push_runs.push(seconds);
    }
    docker::remove_images(&[tag, pushed]);
    let docker_push = Figure::of(docker_push_runs);
    let trousse_push = Figure::of(trousse_push_runs);
    table.push((
        "docker push of the built image to an empty local registry".into(),
        docker_push.text(),
    ));
    table.push((
        "trousse build (warm cache) and push of the same environment to an empty registry".into(),
        trousse_push.text(),
    ));
    table.push((
        "  trousse / docker push".into(),
        format!("{:.3}x", trousse_push.median / docker_push.median),
    ));
    figures.insert(
        "docker",
        json!({
            "build_no_cache": docker_cold, "build_cached": docker_cached,
            "build_one_package_added": docker_added, "build_one_line_change": docker_one_line,
            "push": docker_push, "trousse_build_and_push": trousse_push,
            "ratios": {
                "cold": cold.median / docker_cold.median,
                "same_again": again.median / docker_cached.median,
                "one_package_added": added.median / docker_added.median,
                "push": trousse_push.median / docker_push.median,
            }
        }),
    );
    Ok(())
}

/// Solves a spec and builds it, as `trousse build` does (the solve is timed with the build).
async fn build_spec(spec: EnvSpec, options: BuildOptions) -> anyhow::Result<BuildReport> {
    let resolve = ResolveOptions {
        mirrors: Default::default(),
        limit: Default::default(),
        cache_dir: options.cache_dir.clone(),
        registry: options.registry.clone(),
        reporter: options.reporter.clone(),
    };
    let defaults = spec.image.clone();
    let resolved = BuildRequest::new(Source::Spec(Box::new(spec)))
        .resolve(&defaults, &resolve)
        .await?;
    Ok(trousse_builder::build(resolved, options).await?)
}
