//! `hx domid NAME`: a domain's id, as `xl domid`.
use super::domain;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Domain name
    pub name: String,
}

pub async fn run(_g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let ctx = domain::open()?;
    let id = ctx
        .domid_by_name(&args.name)
        .map_err(|_| hx_engine::HxError::NoSuchDomain(args.name.clone()))?;
    outln!("{id}");
    Ok(0)
}
