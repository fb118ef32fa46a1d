//! `hx reboot DOMAIN...`: ask domains to reboot, as `xl reboot`. hx containers do not reboot
//! (their PID 1 powers off when the workload ends): refused with exit 5.
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
    let xs = &xen_bindings::Xenstore::open()?;
    let code = domain::each(ctx, &args.domains, "reboot", |id| async move {
        if domain::hx_container(xs, id).is_some() {
            return Err(hx_engine::HxError::Refused(format!(
                "reboot domain {id}: it is an hx container (use hx stop and hx run)"
            ))
            .into());
        }
        ctx.reboot(id).await?;
        Ok(())
    })
    .await;
    Ok(code)
}
