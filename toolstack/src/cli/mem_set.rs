//! `hx mem-set DOMAIN SIZE`: set a domain's balloon target, as `xl mem-set`.
use super::domain;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Domain (name or id)
    pub domain: String,
    /// New memory size: a number with b/k/m/g suffix (megabytes without one)
    pub size: String,
}

pub async fn run(_g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let kb = domain::parse_size_kb(&args.size)?;
    let ctx = domain::open()?;
    let id = domain::resolve(&ctx, &args.domain)?;
    ctx.set_memory_target_kb(id, kb)?;
    Ok(0)
}
