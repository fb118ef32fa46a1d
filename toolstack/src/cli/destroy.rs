//! `hx destroy DOMAIN...`: end domains at once, as `xl destroy` (an hx container's monitor then
//! records it as ended without a status).
use super::domain;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Domains (name or id)
    #[arg(required = true)]
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::candidates::containers))]
    pub domains: Vec<String>,
}

pub async fn run(_g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let ctx = &domain::open()?;
    let code = domain::each(ctx, &args.domains, "destroy", |id| async move {
        ctx.destroy(id).await?;
        Ok(())
    })
    .await;
    Ok(code)
}
