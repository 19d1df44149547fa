//! Writes a channel of N synthetic packages (`pkg-000`..) into a directory.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = || anyhow::anyhow!("usage: trousse-synthetic-channel DIR COUNT [SEED]");
    let dir = std::path::PathBuf::from(args.next().ok_or_else(usage)?);
    let count: usize = args.next().ok_or_else(usage)?.parse()?;
    let seed: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1);
    for spec in trousse_testkit::synthetic_packages(count, seed) {
        trousse_testkit::write_package(&dir, &spec, trousse_testkit::ArchiveFormat::Conda)?;
    }
    trousse_testkit::index_channel(&dir).await?;
    eprintln!("wrote {count} packages to {}", dir.display());
    Ok(())
}
