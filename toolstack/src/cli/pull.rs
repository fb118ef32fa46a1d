//! Placeholder until the images work lands.
#[derive(clap::Args, Debug)]
pub struct Args {}

pub async fn run(_g: &super::Globals, _args: Args) -> anyhow::Result<i32> {
    anyhow::bail!("not implemented yet")
}
