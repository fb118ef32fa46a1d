//! `hx restart [-t N] [-s SIGNAL] CONTAINER...`: `hx stop` then `hx start` (docker restart); a
//! stopped container is just started. It keeps its writable layer, name, address and ports.
use super::stop::StopOptions;

pub use super::stop::Args;

pub async fn run(g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    Ok(super::each_name(&args.containers, |name| restart_one(g, name, &args.stop)).await)
}

async fn restart_one(g: &super::Globals, name: &str, how: &StopOptions) -> anyhow::Result<()> {
    let (c, grace, signal) = how.find(&g.root, name)?;
    let root = g.root.clone();
    let started =
        tokio::task::spawn_blocking(move || hx_engine::ops::restart(&root, &c, grace, signal))
            .await??;
    hx_engine::lifecycle::confirm(&g.root, &started.container, started.owner).await?;
    hx_engine::restart::ensure_supervisor(&g.root, &started.container)?;
    Ok(())
}
