//! `hx shutdown [-w] DOMAIN...`: ask domains to power off, as `xl shutdown`. An hx container is
//! asked the way `hx stop` asks it (SIGTERM to its workload; pv-init powers off when it ends),
//! since its PID 1 is not a distribution's init.
use super::domain;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Wait until each domain has shut down
    #[arg(short, long)]
    pub wait: bool,
    /// Domains (name or id)
    #[arg(required = true)]
    pub domains: Vec<String>,
}

pub async fn run(_g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let ctx = domain::open()?;
    let xs = xen_bindings::Xenstore::open()?;
    let mut code = 0;
    let mut waits = Vec::new();
    for d in &args.domains {
        let r = async {
            let id = domain::resolve(&ctx, d)?;
            domain::refuse_dom0(id, "shut down")?;
            let events = if args.wait { Some(ctx.watch_domain(id)?) } else { None };
            if domain::hx_container(&xs, id).is_some() {
                let line = pv_init::status::Control::Signal(libc::SIGTERM).to_line();
                xs.write(&crate::backend::xen::control_node(id), line.as_bytes())?;
            } else {
                ctx.shutdown(id).await?;
            }
            anyhow::Ok((id, events))
        }
        .await;
        match r {
            Ok((id, Some(ev))) => waits.push((id, ev)),
            Ok(_) => {}
            Err(e) => {
                eprintln!("hx: {}", super::one_line(&e));
                code = super::exit_code_for(&e);
            }
        }
    }
    for (id, mut events) in waits {
        // Every domain event is a shutdown or the domain's death: the first one ends the wait.
        if events.next().await.is_none() {
            eprintln!("hx: domain {id}: libxl stopped reporting events");
            code = 4;
        }
    }
    Ok(code)
}
