//! `hx domname ID`: a domain's name, as `xl domname`.
use super::domain;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Domain id
    pub domid: u32,
}

pub async fn run(_g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let ctx = domain::open()?;
    let info = ctx
        .info(args.domid)
        .map_err(|_| hx_engine::HxError::NoSuchDomain(args.domid.to_string()))?;
    outln!("{}", info.name.unwrap_or_default());
    Ok(0)
}
