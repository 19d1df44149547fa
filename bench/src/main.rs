//! `trousse-bench`: trousse's build figures on a conda-forge-shaped channel,
//! side by side in one run with the floor (extract + gzip once) and with the
//! usual way (`docker build` and `docker push`). Prints a table and writes JSON.

mod docker;
mod images;
mod measure;
mod registry;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
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
    images::{registry_breakdown, registry_bytes, BlobKind, ImageBlobs},
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

/// The benchmark's working state: the channel, a scratch directory, and what to measure.
struct Bench {
    work: tempfile::TempDir,
    channel_dir: PathBuf,
    channel: RealisticChannel,
    runs: usize,
    docker_runs: usize,
    counter: std::cell::Cell<usize>,
    /// When the benchmark started (once the channel's model was read).
    started: Instant,
    /// Whether to compare with docker build and docker push.
    measure_docker: bool,
}

impl Bench {
    /// Reads the channel's model, checks what the docker comparison needs, and prepares the work directory and the channel.
    async fn set_up(args: &Args) -> anyhow::Result<Self> {
        let conda_data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conda-data");
        let channel = realistic_channel(&conda_data, args.seed, args.scale)
            .with_context(|| format!("reading {}", conda_data.display()))?;
        let started = Instant::now();
        let measure_docker = docker_to_measure(args)?;
        let work = work_dir(args)?;
        let channel_dir = args
            .channel
            .clone()
            .unwrap_or_else(|| work.path().join("channel"));
        ensure_channel(&channel_dir, &channel, args).await?;
        Ok(Self {
            work,
            channel_dir,
            channel,
            runs: args.runs.max(1),
            docker_runs: args.docker_runs.max(1),
            counter: std::cell::Cell::new(0),
            started,
            measure_docker,
        })
    }

    /// Prints a progress line (stderr) with the seconds since the start.
    fn progress(&self, what: &str) {
        eprintln!("[{:5.0} s] {what}", self.started.elapsed().as_secs_f64());
    }

    /// A path under the work directory.
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
        let spec = scratch_spec(spec)?;
        let output = ImageRef::Oci {
            dir: output.to_path_buf(),
            tag: None,
        };
        let options = build_options(cache.to_path_buf(), compression, output);
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

    /// The channel files of the Binder environment's locked packages (`.conda`, else `.tar.bz2`).
    fn binder_archives(&self) -> anyhow::Result<Vec<PathBuf>> {
        self.channel
            .binder_locked
            .iter()
            .map(|id| {
                self.archive(&format!("{id}.conda"))
                    .or_else(|_| self.archive(&format!("{id}.tar.bz2")))
            })
            .collect()
    }
}

/// Whether to run the docker comparison (asked for, and a Docker Engine answers); it then needs `docker-registry`.
fn docker_to_measure(args: &Args) -> anyhow::Result<bool> {
    let measure_docker = !args.skip_docker && docker::available();
    if measure_docker && !registry::LocalRegistry::installed() {
        bail!(
            "the docker push comparison needs Debian's docker-registry \
             (apt-get install docker-registry, or scripts/bench), or pass --skip-docker"
        );
    }
    Ok(measure_docker)
}

/// The scratch directory: a new temporary directory under `--work-dir`, or under the system's.
fn work_dir(args: &Args) -> anyhow::Result<tempfile::TempDir> {
    Ok(match &args.work_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            tempfile::Builder::new()
                .prefix("trousse-bench-")
                .tempdir_in(dir)?
        }
        None => tempfile::Builder::new()
            .prefix("trousse-bench-")
            .tempdir()?,
    })
}

/// Writes the channel into `channel_dir`, unless it holds one written with the same seed and scale.
async fn ensure_channel(
    channel_dir: &Path,
    channel: &RealisticChannel,
    args: &Args,
) -> anyhow::Result<()> {
    let stamp = channel_dir.join(".trousse-bench");
    let identity = format!("seed {} scale {}\n", args.seed, args.scale);
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(identity.as_str()) {
        eprintln!("reusing the channel in {}", channel_dir.display());
        return Ok(());
    }
    eprintln!(
        "writing the channel ({} packages, scale {})...",
        channel.packages.len(),
        args.scale
    );
    if channel_dir.exists() {
        std::fs::remove_dir_all(channel_dir)
            .with_context(|| format!("removing {}", channel_dir.display()))?;
    }
    write_channel_staged_in_memory(channel_dir, channel).await?;
    std::fs::write(&stamp, &identity)?;
    Ok(())
}

/// Writes the channel, staging its ~50,000 files one by one in memory when it can (not measured).
async fn write_channel_staged_in_memory(
    channel_dir: &Path,
    channel: &RealisticChannel,
) -> anyhow::Result<()> {
    let previous_tmpdir = std::env::var_os("TMPDIR");
    if Path::new("/dev/shm").is_dir() {
        std::env::set_var("TMPDIR", "/dev/shm");
    }
    let written = write_realistic_channel(channel_dir, channel).await;
    match previous_tmpdir {
        Some(dir) => std::env::set_var("TMPDIR", dir),
        None => std::env::remove_var("TMPDIR"),
    }
    written?;
    Ok(())
}

/// Reads a spec file with trousse's image defaults on scratch (the same base for every contender).
fn scratch_spec(spec: &Path) -> anyhow::Result<EnvSpec> {
    let defaults = ImageSettings {
        base: ImageRef::Scratch,
        ..ImageSettings::default()
    };
    Ok(EnvSpec::from_path(spec, &defaults)?)
}

/// Build options with this cache, layer compression and output; silent, no mirrors, no limits.
fn build_options(cache_dir: PathBuf, compression: Compression, output: ImageRef) -> BuildOptions {
    BuildOptions {
        mirrors: Default::default(),
        post_build_network: false,
        max_image_bytes: None,
        cache_dir,
        compression,
        output,
        reporter: silent(),
        registry: RegistryOptions::default(),
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

/// Unpacks an image's layers (in order) into a new directory: the installed environment.
fn unpack_image(layout: &Path, into: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(into)?;
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

/// Bytes in megabytes, as the table prints them (`12.3 MB`).
fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// A ratio as the table prints it (`1.234x`).
fn times(ratio: f64) -> String {
    format!("{ratio:.3}x")
}

/// What the benchmark found: the rows of the printed table and the figures of the JSON report.
#[derive(Default)]
struct Results {
    table: Vec<(String, String)>,
    figures: BTreeMap<&'static str, Value>,
}

impl Results {
    /// Adds a row to the table: what was measured, and its figure.
    fn row(&mut self, what: impl Into<String>, value: impl Into<String>) {
        self.table.push((what.into(), value.into()));
    }

    /// Records one scenario's figures for the JSON report.
    fn figure(&mut self, name: &'static str, value: Value) {
        self.figures.insert(name, value);
    }

    /// Prints the table on stdout (other scripts parse these lines).
    fn print_table(&self) {
        println!("\n{:<96} seconds: median (min, max), or bytes", "scenario");
        for (what, value) in &self.table {
            println!("{what:<96} {value}");
        }
    }

    /// Writes the JSON report (the run's settings and every figure) to `--json`.
    fn write_json(&self, args: &Args, bench: &Bench) -> anyhow::Result<()> {
        let report = json!({
            "date": today(),
            "scale": args.scale, "runs": bench.runs, "docker_runs": bench.docker_runs, "seed": args.seed,
            "work_dir": bench.work.path().display().to_string(),
            "benchmark_seconds": bench.started.elapsed().as_secs_f64(),
            "machine": {"cpus": std::thread::available_parallelism().map_or(0, |n| n.get())},
            "figures": self.figures,
        });
        if let Some(parent) = args.json.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&args.json, serde_json::to_string_pretty(&report)?)?;
        eprintln!(
            "wrote {} ({:.1} minutes in all)",
            args.json.display(),
            bench.started.elapsed().as_secs_f64() / 60.0
        );
        Ok(())
    }
}

/// What the docker comparison sets against docker: trousse's specs, warm cache and figures.
struct Trousse {
    /// The Binder environment's spec.
    binder: PathBuf,
    /// The spec of the Binder environment with one package more.
    plus_one_spec: PathBuf,
    /// A cache holding the Binder environment's packages.
    warm: PathBuf,
    /// Cold builds of the Binder environment.
    cold: Figure,
    /// The same environment again.
    again: Figure,
    /// One package added.
    added: Figure,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bench = Bench::set_up(&args).await?;
    let mut results = Results::default();
    let binder = bench.spec("binder", &bench.channel.binder)?;
    let (cold, warm) = cold_builds_and_floor(&bench, &binder, &mut results).await?;
    let (again, binder_image) = same_again(&bench, &binder, &warm, &mut results).await?;
    let (added, plus_one_spec) =
        one_package_added(&bench, &warm, &binder_image, &mut results).await?;
    let all = ten_courses(&bench, &warm, &mut results).await?;
    new_combination(&bench, &all, &mut results).await?;
    let trousse = Trousse {
        binder,
        plus_one_spec,
        warm,
        cold,
        again,
        added,
    };
    docker_comparison(&bench, &trousse, &mut results).await;
    results.print_table();
    results.write_json(&args, &bench)
}

/// Scenarios 1 and 2: cold builds (empty cache, solve included) and the floor,
/// alternated run by run so both see the same machine, each after a sync.
/// Returns the cold builds' figure and a warm cache of the Binder environment.
async fn cold_builds_and_floor(
    bench: &Bench,
    binder: &Path,
    results: &mut Results,
) -> anyhow::Result<(Figure, PathBuf)> {
    bench.progress("cold builds and the floor...");
    let archives = bench.binder_archives()?;
    let runs = ColdRuns::measure(bench, binder, &archives).await?;
    let cold = Figure::of(runs.cold);
    let warm = bench.path("warm-cache");
    bench.build(binder, &warm, &bench.fresh("image")).await?;
    report_cold_builds(&cold, &runs.report, runs.stages, results);
    report_floor(&cold, Figure::of(runs.floor), results);
    Ok((cold, warm))
}

/// The run times of the cold builds and of the floor, alternated run by run.
struct ColdRuns {
    /// Seconds of each cold build.
    cold: Vec<f64>,
    /// Seconds of each floor run.
    floor: Vec<f64>,
    /// Seconds of each build stage, by stage name, run by run.
    stages: BTreeMap<String, Vec<f64>>,
    /// The last cold build's report.
    report: BuildReport,
}

impl ColdRuns {
    /// Runs `bench.runs` cold builds of the spec, each followed by the floor over these archives.
    async fn measure(bench: &Bench, binder: &Path, archives: &[PathBuf]) -> anyhow::Result<Self> {
        let mut cold = Vec::new();
        let mut floor = Vec::new();
        let mut stages: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let mut last = None;
        for _ in 0..bench.runs {
            settle();
            let (seconds, report) =
                timed(bench.build(binder, &bench.fresh("cache"), &bench.fresh("image"))).await;
            let report = report?;
            cold.push(seconds);
            for (stage, s) in &report.seconds {
                stages.entry(stage.name().to_string()).or_default().push(*s);
            }
            last = Some(report);
            settle();
            floor.push(extract_and_gzip(bench, archives)?.0);
        }
        let report = last.context("no runs")?;
        Ok(Self {
            cold,
            floor,
            stages,
            report,
        })
    }
}

/// The cold builds' rows (and their stages') and figures.
fn report_cold_builds(
    cold: &Figure,
    report: &BuildReport,
    stage_runs: BTreeMap<String, Vec<f64>>,
    results: &mut Results,
) {
    results.row(
        format!(
            "cold build of the Binder environment ({} packages, {} layers, {})",
            report.packages,
            report.layers,
            mb(report.bytes)
        ),
        cold.text(),
    );
    let stages: BTreeMap<String, Figure> = stage_runs
        .into_iter()
        .map(|(stage, runs)| (stage, Figure::of(runs)))
        .collect();
    for (stage, figure) in &stages {
        results.row(format!("  of which {stage}"), figure.text());
    }
    results.figure("cold_build", json!({"seconds": cold, "stages": stages, "packages": report.packages, "layers": report.layers, "bytes": report.bytes}));
}

/// The floor's rows and figures, set against the cold builds: by medians and run by run.
fn report_floor(cold: &Figure, floor: Figure, results: &mut Results) {
    results.row(
        "floor: extract every archive and gzip its bytes once",
        floor.text(),
    );
    let pair_ratios = Figure::of(
        cold.runs
            .iter()
            .zip(&floor.runs)
            .map(|(c, f)| c / f)
            .collect(),
    );
    results.row(
        "  cold build / floor (medians)",
        times(cold.median / floor.median),
    );
    results.row(
        "  cold build / floor, run by run: median (min, max)",
        pair_ratios.text(),
    );
    results.figure(
        "floor",
        json!({"seconds": floor, "cold_over_floor": cold.median / floor.median, "cold_over_floor_by_run": pair_ratios}),
    );
}

/// Scenario 3: the same environment again, each run on a copy of the warm cache.
/// Returns its figure and the image it built.
async fn same_again(
    bench: &Bench,
    binder: &Path,
    warm: &Path,
    results: &mut Results,
) -> anyhow::Result<(Figure, PathBuf)> {
    let (again, again_report, binder_image) =
        bench.time_builds(binder, |c| clone_cache(warm, c)).await?;
    results.row(
        format!(
            "the same environment again ({} of {} layers cached)",
            again_report.cached_layers, again_report.layers
        ),
        again.text(),
    );
    results.figure(
        "same_again",
        json!({"seconds": again, "cached_layers": again_report.cached_layers}),
    );
    Ok((again, binder_image))
}

/// Scenario 4: one package added, each run on a copy of the warm cache, and what a
/// node holding the environment then pulls. Returns its figure and its spec.
async fn one_package_added(
    bench: &Bench,
    warm: &Path,
    binder_image: &Path,
    results: &mut Results,
) -> anyhow::Result<(Figure, PathBuf)> {
    let mut plus_one = bench.channel.binder.clone();
    plus_one.push(bench.channel.extra_package.clone());
    let plus_one_spec = bench.spec("binder-plus-one", &plus_one)?;
    let (added, added_report, plus_one_image) = bench
        .time_builds(&plus_one_spec, |c| clone_cache(warm, c))
        .await?;
    results.row(
        format!(
            "one package added ({}: {} of {} layers cached)",
            bench.channel.extra_package, added_report.cached_layers, added_report.layers
        ),
        added.text(),
    );
    results.figure("one_package_added", json!({"seconds": added, "cached_layers": added_report.cached_layers, "layers": added_report.layers}));
    node_pull(binder_image, &plus_one_image, results).await?;
    Ok((added, plus_one_spec))
}

/// What a hub node holding the environment (`held`) pulls for it with one package more (`wanted`).
async fn node_pull(held: &Path, wanted: &Path, results: &mut Results) -> anyhow::Result<()> {
    let held = ImageBlobs::read(held).await?;
    let wanted = ImageBlobs::read(wanted).await?;
    let node_pulls = wanted.bytes_missing_from(&held);
    results.row(
        "  a node holding the environment pulls, of the new image (one layer: all of it)",
        format!("{} of {}", mb(node_pulls), mb(wanted.bytes())),
    );
    results.figure(
        "one_package_added_pull",
        json!({"node_pulls_bytes": node_pulls, "image_bytes": wanted.bytes()}),
    );
    Ok(())
}

/// Scenario 5: the ten courses, on one cache that then holds every package; returns that cache.
async fn ten_courses(bench: &Bench, warm: &Path, results: &mut Results) -> anyhow::Result<PathBuf> {
    bench.progress("course environments...");
    let all = bench.path("all-cache");
    clone_cache(warm, &all)?;
    let courses = build_courses(bench, &all, Compression::Gzip).await?;
    let bytes = CourseBytes::measure(bench, &all, &courses).await?;
    report_course_rows(&courses, &bytes, results);
    results.figure("ten_courses", course_figures(&courses, &bytes));
    Ok(all)
}

/// What the ten courses' images weigh in a registry, set against their packages.
struct CourseBytes {
    /// Bytes a registry stores for the images (each blob once).
    stored: u64,
    /// Those bytes and blob counts, by kind of blob.
    breakdown: BTreeMap<BlobKind, (u64, usize)>,
    /// Bytes of the images counted one by one, as if each were one layer.
    one_layer_per_image: u64,
    /// How many distinct packages the images hold.
    unique_packages: usize,
    /// Bytes of those packages' archives.
    unique_package_bytes: u64,
    /// Bytes of those packages, each extracted and gzipped once.
    unique_gzip_bytes: u64,
    /// Bytes a registry stores for the same images with zstd layers.
    stored_zstd: u64,
    /// Bytes a node holding the first course pulls for the second.
    second_pull: u64,
}

impl CourseBytes {
    /// Measures the courses' images, their distinct packages, and the same images built with zstd layers on `cache`.
    async fn measure(
        bench: &Bench,
        cache: &Path,
        courses: &[(String, ImageBlobs)],
    ) -> anyhow::Result<Self> {
        let images: Vec<ImageBlobs> = courses.iter().map(|(_, b)| b.clone()).collect();
        let stored = registry_bytes(&images);
        let breakdown = registry_breakdown(&images);
        let one_layer_per_image: u64 = images.iter().map(ImageBlobs::bytes).sum();
        let unique_packages = unique_packages(&images);
        let unique_archives = unique_packages
            .iter()
            .map(|p| bench.archive(p))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let unique_package_bytes = file_bytes(&unique_archives)?;
        let (_, unique_gzip_bytes) = extract_and_gzip(bench, &unique_archives)?;
        let zstd_images: Vec<ImageBlobs> = build_courses(bench, cache, Compression::Zstd)
            .await?
            .into_iter()
            .map(|(_, b)| b)
            .collect();
        Ok(Self {
            stored,
            breakdown,
            one_layer_per_image,
            unique_packages: unique_packages.len(),
            unique_package_bytes,
            unique_gzip_bytes,
            stored_zstd: registry_bytes(&zstd_images),
            second_pull: images[1].bytes_missing_from(&images[0]),
        })
    }
}

/// The package files (conda file names) any of these images holds.
fn unique_packages(images: &[ImageBlobs]) -> BTreeSet<String> {
    let mut unique = BTreeSet::new();
    for image in images {
        unique.extend(image.packages.iter().cloned());
    }
    unique
}

/// The total size of these files.
fn file_bytes(files: &[PathBuf]) -> anyhow::Result<u64> {
    Ok(files
        .iter()
        .map(|a| Ok(std::fs::metadata(a)?.len()))
        .collect::<anyhow::Result<Vec<u64>>>()?
        .into_iter()
        .sum())
}

/// The ten courses' rows: registry bytes, by kind and against the packages, and a node's pull.
fn report_course_rows(
    courses: &[(String, ImageBlobs)],
    sizes: &CourseBytes,
    results: &mut Results,
) {
    results.row(
        format!(
            "ten courses: registry bytes, layered per package ({} unique packages)",
            sizes.unique_packages
        ),
        mb(sizes.stored),
    );
    for (kind, (bytes, count)) in &sizes.breakdown {
        results.row(
            format!("    of which {} ({count} blobs)", kind.name()),
            mb(*bytes),
        );
    }
    results.row(
        "  the same images as one layer each",
        mb(sizes.one_layer_per_image),
    );
    results.row(
        "  unique package archive bytes",
        mb(sizes.unique_package_bytes),
    );
    results.row(
        "  registry bytes / unique package bytes",
        times(sizes.stored as f64 / sizes.unique_package_bytes as f64),
    );
    results.row(
        "  unique packages, each gzipped once (the layers' own compression)",
        mb(sizes.unique_gzip_bytes),
    );
    results.row(
        "  registry bytes / unique packages gzipped once",
        times(sizes.stored as f64 / sizes.unique_gzip_bytes as f64),
    );
    results.row(
        "  registry bytes with zstd layers (--compression zstd)",
        mb(sizes.stored_zstd),
    );
    results.row(
        "  registry bytes with zstd layers / unique package bytes",
        times(sizes.stored_zstd as f64 / sizes.unique_package_bytes as f64),
    );
    results.row(
        format!(
            "  a node holding {} pulls for {}",
            courses[0].0, courses[1].0
        ),
        format!("{} of {}", mb(sizes.second_pull), mb(courses[1].1.bytes())),
    );
}

/// The ten courses' figures for the JSON report.
fn course_figures(courses: &[(String, ImageBlobs)], sizes: &CourseBytes) -> Value {
    json!({
        "registry_bytes": sizes.stored,
        "registry_breakdown": sizes.breakdown.iter().map(|(k, (bytes, count))| (k.name(), json!({"bytes": bytes, "blobs": count}))).collect::<BTreeMap<_, _>>(),
        "one_layer_per_image_bytes": sizes.one_layer_per_image,
        "unique_package_bytes": sizes.unique_package_bytes, "unique_packages": sizes.unique_packages,
        "unique_packages_gzipped_once_bytes": sizes.unique_gzip_bytes,
        "registry_bytes_zstd": sizes.stored_zstd,
        "ratios": {
            "registry_over_unique_packages": sizes.stored as f64 / sizes.unique_package_bytes as f64,
            "registry_over_unique_packages_gzipped_once": sizes.stored as f64 / sizes.unique_gzip_bytes as f64,
            "registry_zstd_over_unique_packages": sizes.stored_zstd as f64 / sizes.unique_package_bytes as f64,
        },
        "second_course_pull_bytes": sizes.second_pull, "second_course_bytes": courses[1].1.bytes(),
        "courses": courses.iter().map(|(n, b)| json!({"name": n, "bytes": b.bytes(), "layers": b.layers.len()})).collect::<Vec<_>>(),
    })
}

/// Scenario 6: a new combination of cached packages, each run one never built before.
async fn new_combination(bench: &Bench, all: &Path, results: &mut Results) -> anyhow::Result<()> {
    let mut combination_runs = Vec::new();
    let mut combination_packages = 0;
    for run in 0..bench.runs {
        let deps = combination_dependencies(bench, run);
        let spec = bench.spec(&format!("combination-{run}"), &deps)?;
        let cache = bench.fresh("cache");
        clone_cache(all, &cache)?;
        settle();
        let (seconds, report) = timed(bench.build(&spec, &cache, &bench.fresh("image"))).await;
        let report = report?;
        combination_packages = report.packages;
        combination_runs.push(seconds);
    }
    let combination = Figure::of(combination_runs);
    results.row(format!("a new combination of cached packages ({combination_packages} packages, solve included)"), combination.text());
    results.figure(
        "new_combination",
        json!({"seconds": combination, "packages": combination_packages}),
    );
    Ok(())
}

/// The dependencies of the `run`th new combination: Binder's, those of (up to) two
/// courses from the `run`th on (modulo their number), and the extra package.
fn combination_dependencies(bench: &Bench, run: usize) -> Vec<String> {
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
    deps
}

/// Scenario 7: the usual way, when measured; its failure becomes a row and a figure, not an error.
async fn docker_comparison(bench: &Bench, trousse: &Trousse, results: &mut Results) {
    if !bench.measure_docker {
        results.row(
            "docker build / docker push",
            "not measured (no Docker Engine or --skip-docker)",
        );
        return;
    }
    bench.progress("docker build and push...");
    if let Err(e) = usual_way(bench, trousse, results).await {
        eprintln!("the docker comparison failed: {e:#}");
        results.row("docker build / docker push", format!("failed: {e:#}"));
        results.figure("docker", json!({"error": format!("{e:#}")}));
    }
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

/// The same environments built by `docker build` and pushed by `docker push`, set against trousse.
async fn usual_way(bench: &Bench, trousse: &Trousse, results: &mut Results) -> anyhow::Result<()> {
    // the installed environments, as trousse's images hold them
    let contexts = DockerContexts::prepare(bench, trousse).await?;
    let tag = "trousse-bench/binder:latest";
    // the image of the last cold build, kept for the push comparison
    let pushed = "trousse-bench/binder:pushed";
    let builds = DockerBuilds::measure(bench, &contexts, tag, pushed)?;
    builds.report(trousse, results);
    let pushes = Pushes::measure(bench, trousse, pushed).await?;
    docker::remove_images(&[tag, pushed]);
    pushes.report(results);
    results.figure("docker", docker_figures(trousse, &builds, &pushes));
    Ok(())
}

/// The docker build contexts of the Binder environment and of it with one package more.
struct DockerContexts {
    /// Where the contexts are (in memory when possible), deleted when dropped.
    _root: tempfile::TempDir,
    /// The Binder environment's context.
    binder: PathBuf,
    /// The context of the environment with one package more.
    plus_one: PathBuf,
}

impl DockerContexts {
    /// Builds both environments with trousse and unpacks their images into contexts (setup, not measured).
    async fn prepare(bench: &Bench, trousse: &Trousse) -> anyhow::Result<Self> {
        let base_layout = bench.fresh("docker-src");
        bench
            .build(&trousse.binder, &trousse.warm, &base_layout)
            .await?;
        // contexts in memory when possible: unpacking them is setup, not measured
        let shm = Path::new("/dev/shm");
        let root = tempfile::Builder::new()
            .prefix("trousse-bench-context-")
            .tempdir_in(if shm.is_dir() { shm } else { bench.work.path() })?;
        let binder = root.path().join("binder");
        unpack_image(&base_layout, &binder)?;
        let plus_layout = bench.fresh("docker-src");
        bench
            .build(&trousse.plus_one_spec, &trousse.warm, &plus_layout)
            .await?;
        let plus_one = root.path().join("binder-plus-one");
        unpack_image(&plus_layout, &plus_one)?;
        Ok(Self {
            _root: root,
            binder,
            plus_one,
        })
    }
}

/// The docker build figures.
struct DockerBuilds {
    /// `docker build --no-cache`.
    cold: Figure,
    /// Again, nothing changed (cached).
    cached: Figure,
    /// With one package added.
    added: Figure,
    /// After a one-line Dockerfile change.
    one_line: Figure,
}

impl DockerBuilds {
    /// Runs each docker build `docker_runs` times, as `tag`; the cold build's image is kept as `pushed`.
    fn measure(
        bench: &Bench,
        contexts: &DockerContexts,
        tag: &str,
        pushed: &str,
    ) -> anyhow::Result<Self> {
        let context = docker::BuildContext::new(&contexts.binder, "")?;
        let plus_context = docker::BuildContext::new(&contexts.plus_one, "")?;
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
            let one_line =
                docker::BuildContext::new(&contexts.binder, &format!("ENV COURSE=run-{run}\n"))?;
            one_line_runs.push(one_line.build(tag, false)?);
            docker::BuildContext::new(&contexts.binder, "")?;
        }
        Ok(Self {
            cold: Figure::of(cold_runs),
            cached: Figure::of(cached_runs),
            added: Figure::of(added_runs),
            one_line: Figure::of(one_line_runs),
        })
    }

    /// The docker builds' rows, each followed by trousse's ratio to it.
    fn report(&self, trousse: &Trousse, results: &mut Results) {
        results.row(
            "docker build --no-cache of the same environment (COPY onto scratch)",
            self.cold.text(),
        );
        results.row(
            "  trousse cold build / docker build",
            times(trousse.cold.median / self.cold.median),
        );
        results.row(
            "docker build again, nothing changed (cached)",
            self.cached.text(),
        );
        results.row(
            "  trousse same again / docker cached",
            times(trousse.again.median / self.cached.median),
        );
        results.row(
            "docker build with one package added (the COPY layer is rebuilt)",
            self.added.text(),
        );
        results.row(
            "  trousse one package added / docker",
            times(trousse.added.median / self.added.median),
        );
        results.row(
            "docker build after a one-line Dockerfile change (ENV)",
            self.one_line.text(),
        );
    }
}

/// The push figures: `docker push` of the built image, and trousse's build and push.
struct Pushes {
    /// `docker push` to an empty local registry.
    docker: Figure,
    /// trousse build (warm cache) and push to an empty local registry.
    trousse: Figure,
}

impl Pushes {
    /// Pushes to a fresh local registry each run: the `pushed` image with docker, the Binder environment with trousse.
    async fn measure(bench: &Bench, trousse: &Trousse, pushed: &str) -> anyhow::Result<Self> {
        let mut docker_push_runs = Vec::new();
        let mut trousse_push_runs = Vec::new();
        for _ in 0..bench.docker_runs {
            let registry = registry::LocalRegistry::start(&bench.fresh("registry"))?;
            docker_push_runs.push(docker::push(
                pushed,
                &format!("{}/bench/docker:1", registry.host),
            )?);
            trousse_push_runs.push(build_and_push(bench, trousse, &registry.host).await?);
        }
        Ok(Self {
            docker: Figure::of(docker_push_runs),
            trousse: Figure::of(trousse_push_runs),
        })
    }

    /// The push rows, and trousse's ratio to docker push.
    fn report(&self, results: &mut Results) {
        results.row(
            "docker push of the built image to an empty local registry",
            self.docker.text(),
        );
        results.row(
            "trousse build (warm cache) and push of the same environment to an empty registry",
            self.trousse.text(),
        );
        results.row(
            "  trousse / docker push",
            times(self.trousse.median / self.docker.median),
        );
    }
}

/// Seconds of one trousse build of the Binder environment, on a copy of the warm cache, pushed to the registry at `host`.
async fn build_and_push(bench: &Bench, trousse: &Trousse, host: &str) -> anyhow::Result<f64> {
    let output = ImageRef::Registry {
        reference: format!("{host}/bench/trousse:1"),
    };
    let spec = scratch_spec(&trousse.binder)?;
    let cache = bench.fresh("cache");
    clone_cache(&trousse.warm, &cache)?;
    let options = build_options(cache, Compression::Gzip, output);
    let (seconds, report) = timed(build_spec(spec, options)).await;
    report?;
    Ok(seconds)
}

/// The docker comparison's figures for the JSON report.
fn docker_figures(trousse: &Trousse, builds: &DockerBuilds, pushes: &Pushes) -> Value {
    json!({
        "build_no_cache": builds.cold, "build_cached": builds.cached,
        "build_one_package_added": builds.added, "build_one_line_change": builds.one_line,
        "push": pushes.docker, "trousse_build_and_push": pushes.trousse,
        "ratios": {
            "cold": trousse.cold.median / builds.cold.median,
            "same_again": trousse.again.median / builds.cached.median,
            "one_package_added": trousse.added.median / builds.added.median,
            "push": pushes.trousse.median / pushes.docker.median,
        }
    })
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
