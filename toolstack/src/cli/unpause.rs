//! `hx unpause NAME...`: thaw paused hx containers and, on a Xen dom0, any other domain as
//! `xl unpause` does.

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Containers (name or id), or on Xen any domain (name or id)
    #[arg(required = true)]
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::candidates::containers))]
    pub domains: Vec<String>,
}

pub async fn run(g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    super::pause::freeze_or_thaw(g, &args.domains, false).await
}
