//! `hx config DOMAIN`: a domain's configuration as libxl's JSON, the `config` of `xl list -l
//! DOMAIN` (for an hx container: the domain hx built for it, with its `hx/id` xenstore data).
use super::domain;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The domain (name or id), or an hx container's name or id
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::candidates::containers))]
    pub domain: String,
}

pub async fn run(_g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let ctx = domain::open()?;
    let domid = domain::resolve(&ctx, &args.domain)?;
    let mut cfg = ctx.retrieve_config(domid).await.map_err(|e| {
        super::Fixed::wrap(
            1,
            anyhow::anyhow!("{}: libxl has no config for it: {e}", args.domain),
        )
    })?;
    domain::print(&ctx.config_json(&mut cfg)?)?;
    Ok(0)
}
