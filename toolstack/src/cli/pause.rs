//! `hx pause DOMAIN...`: stop scheduling domains' vCPUs, as `xl pause`.
use super::domain;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Domains (name or id)
    #[arg(required = true)]
    pub domains: Vec<String>,
}

pub async fn run(_g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let ctx = &domain::open()?;
    let code = domain::each(ctx, &args.domains, "pause", |id| async move {
        ctx.pause(id).await?;
        Ok(())
    })
    .await;
    Ok(code)
}
