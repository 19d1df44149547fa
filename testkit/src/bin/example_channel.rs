//! Writes trousse's example conda channel into the directory given.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .map(std::path::PathBuf::from)
        .ok_or_else(|| anyhow::anyhow!("usage: trousse-example-channel DIR"))?;
    trousse_testkit::write_example_channel(&dir).await?;
    eprintln!("wrote the example channel to {}", dir.display());
    Ok(())
}
