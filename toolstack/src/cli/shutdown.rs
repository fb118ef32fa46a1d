//! `hx shutdown [-w] -a | DOMAIN...`: ask domains to power off, as `xl shutdown` (Xen's PV
//! shutdown request). An hx container's pv-init answers it like `hx stop`: SIGTERM to the
//! workload, SIGKILL 10 s later, then power-off (pv_init::host_stop).
use super::domain;
use xen_bindings::DomainEvent;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Wait until each domain has shut down (an hx container: until its domain is gone)
    #[arg(short, long)]
    pub wait: bool,
    /// Every domain but Domain-0
    #[arg(short, long)]
    pub all: bool,
    /// Domains (name, id or hx container)
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::candidates::containers))]
    pub domains: Vec<String>,
}

pub async fn run(_g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    if args.all != args.domains.is_empty() {
        return Err(super::Fixed::wrap(
            1,
            anyhow::anyhow!("You must specify -a or a domain id (not both)."),
        ));
    }
    let ctx = domain::open()?;
    let xs = xen_bindings::Xenstore::open()?;
    let mut code = 0;
    let mut waits = Vec::new();
    let domains: Vec<String> = if args.all {
        let list = ctx.list()?;
        list.iter()
            .filter(|d| d.domid != 0 && !d.dying && !d.shutdown)
            .map(|d| d.domid.to_string())
            .collect()
    } else {
        args.domains.clone()
    };
    for d in &domains {
        let r = async {
            let id = domain::resolve(&ctx, d)?;
            domain::refuse_dom0(id, "shut down")?;
            let events = if args.wait {
                Some(ctx.watch_domain(id)?)
            } else {
                None
            };
            let hx = domain::hx_container(&xs, id).is_some();
            ctx.shutdown(id).await?;
            anyhow::Ok((id, hx, events))
        }
        .await;
        match r {
            Ok((id, hx, Some(ev))) => waits.push((id, hx, ev)),
            Ok(_) => {}
            Err(e) => {
                errln!("hx: {}", super::one_line(&e));
                code = super::exit_code_for(&e);
            }
        }
    }
    for (id, hx, mut events) in waits {
        loop {
            match events.next().await {
                // An hx container's monitor destroys the domain once it has the exit status:
                // wait for that, so the container is settled when -w returns.
                Some(DomainEvent::Shutdown { .. }) if hx => continue,
                Some(_) => break,
                None => {
                    errln!("hx: domain {id}: libxl stopped reporting events");
                    code = 4;
                    break;
                }
            }
        }
    }
    Ok(code)
}
