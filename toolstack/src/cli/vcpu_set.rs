//! `hx vcpu-set DOMAIN N`: bring vCPUs 0..N online and the rest offline, as `xl vcpu-set`.
use super::domain;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Domain (name or id)
    pub domain: String,
    /// vCPUs to have online (1 to the domain's maximum)
    pub vcpus: u32,
}

pub async fn run(_g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let ctx = domain::open()?;
    let id = domain::resolve(&ctx, &args.domain)?;
    let max = ctx.info(id)?.vcpus_max;
    if args.vcpus == 0 || args.vcpus > max {
        anyhow::bail!(
            "vcpu-set {}: {} vCPUs requested, the domain has 1..{max}",
            args.domain,
            args.vcpus
        );
    }
    ctx.set_vcpus_online(id, args.vcpus).await?;
    Ok(0)
}
