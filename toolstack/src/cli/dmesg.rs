//! `hx dmesg [-c]`: the hypervisor's message ring, as `xl dmesg`.
use super::domain;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Clear the ring after printing it
    #[arg(short, long)]
    pub clear: bool,
}

pub async fn run(_g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let ctx = domain::open()?;
    let text = ctx.dmesg(args.clear)?;
    domain::print(&text)?;
    Ok(0)
}
