//! Writes a conda channel (a stand-in python 3.12, pip and N synthetic
//! packages) and a PEP 503 index of M synthetic wheels into a directory,
//! with `environment.yml` (all of both) and `requirements.txt` (the wheels).

use trousse_testkit::{
    index_channel, synthetic_packages,
    wheels::{synthetic_wheels, write_simple_index, write_wheel},
    write_package, ArchiveFormat, PackageSpec,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage =
        || anyhow::anyhow!("usage: trousse-pypi-world DIR CONDA_COUNT WHEEL_COUNT INDEX_URL");
    let dir = std::path::absolute(args.next().ok_or_else(usage)?)?;
    let conda: usize = args.next().ok_or_else(usage)?.parse()?;
    let wheels: usize = args.next().ok_or_else(usage)?.parse()?;
    let index_url = args.next().ok_or_else(usage)?;
    let channel = dir.join("channel");
    let python = PackageSpec::new("python", "3.12.0")
        .file("bin/python3.12", "#!/bin/sh\necho stand-in\n", 0o755)
        .file(
            "lib/python3.12/site-packages/README.txt",
            "site-packages\n",
            0o644,
        )
        .timestamp(1_700_000_400);
    let pip = PackageSpec::new("pip", "24.0")
        .noarch("python")
        .file(
            "site-packages/pip-24.0.dist-info/METADATA",
            "Metadata-Version: 2.1\nName: pip\nVersion: 24.0\n",
            0o644,
        )
        .timestamp(1_700_000_500);
    for spec in synthetic_packages(conda, 7).iter().chain([&python, &pip]) {
        write_package(&channel, spec, ArchiveFormat::Conda)?;
    }
    index_channel(&channel).await?;
    let wheel_dir = dir.join("wheels");
    fs_err::create_dir_all(&wheel_dir)?;
    let files = synthetic_wheels(wheels, 7)
        .iter()
        .map(|w| write_wheel(&wheel_dir, w))
        .collect::<anyhow::Result<Vec<_>>>()?;
    write_simple_index(&dir.join("index"), &files)?;
    let names: Vec<String> = (0..wheels).map(|i| format!("wheel-{i:03}")).collect();
    let requirements = format!("--index-url {index_url}\n{}\n", names.join("\n"));
    fs_err::write(dir.join("requirements.txt"), &requirements)?;
    let conda_deps: String = (0..conda).map(|i| format!("  - pkg-{i:03}\n")).collect();
    let pip_deps: String = requirements
        .lines()
        .map(|l| format!("    - \"{l}\"\n"))
        .collect();
    fs_err::write(
        dir.join("environment.yml"),
        format!("name: mixed\nchannels: [{}]\ndependencies:\n  - python=3.12\n  - pip\n{conda_deps}  - pip:\n{pip_deps}", channel.display()),
    )?;
    eprintln!(
        "wrote {conda} conda packages and {wheels} wheels (3 versions each) to {}",
        dir.display()
    );
    Ok(())
}
