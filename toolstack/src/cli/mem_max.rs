//! `hx mem-max DOMAIN SIZE`: set a domain's static maximum memory, as `xl mem-max`.
use super::domain;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Domain (name, id or hx container)
    pub domain: String,
    /// Maximum memory: a number with b/k/m/g suffix (megabytes without one)
    pub size: String,
}

pub async fn run(_g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let kb = domain::parse_size_kb(&args.size).map_err(|e| super::Fixed::wrap(1, e))?;
    let ctx = domain::open()?;
    let id = domain::resolve(&ctx, &args.domain)?;
    ctx.set_max_memory_kb(id, kb)?;
    Ok(0)
}
