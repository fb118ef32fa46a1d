//! `hx rm`: remove containers (and, with -f, stop them first).

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Kill and remove running containers
    #[arg(short, long)]
    pub force: bool,
    /// Also remove the container's anonymous volumes (named volumes always stay)
    #[arg(short, long)]
    pub volumes: bool,
    /// Container names or ids
    #[arg(required = true)]
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::candidates::containers))]
    pub containers: Vec<String>,
}

pub async fn run(g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    Ok(super::each_name(&args.containers, |name| {
        std::future::ready(hx_engine::ops::remove(
            &g.root,
            name,
            args.force,
            args.volumes,
        ))
    })
    .await)
}
