//! `hx pause NAME...`: freeze hx containers (docker's pause: the VM's vCPUs stop, QEMU through
//! QMP, Xen the domain) and, on a Xen dom0, any other domain as `xl pause` does.
use super::domain;
use hx_engine::backend;
use hx_engine::container::{self, Status};
use hx_engine::HxError;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Containers (name or id), or on Xen any domain (name or id)
    #[arg(required = true)]
    pub domains: Vec<String>,
}

pub async fn run(g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    freeze_or_thaw(g, &args.domains, true).await
}

/// Containers first (docker's output: each name on success), then the names hx does not know
/// as xl domains. Exit 1 if a container failed (docker), else the last
/// domain failure's (xl).
pub async fn freeze_or_thaw(
    g: &super::Globals,
    keys: &[String],
    pause: bool,
) -> anyhow::Result<i32> {
    let verb = if pause { "pause" } else { "unpause" };
    let mut code = 0;
    let mut domains = Vec::new();
    for key in keys {
        let r = match container::find(&g.root, key) {
            Ok(c) => {
                let root = g.root.clone();
                tokio::task::spawn_blocking(move || one(&root, &c, pause)).await?
            }
            // xl's contract for every other name: a domain (exit 3 outside a dom0).
            Err(e) if is_no_such_container(&e) => {
                domains.push(key.clone());
                continue;
            }
            Err(e) => Err(e),
        };
        match r {
            Ok(()) => outln!("{key}"),
            Err(e) => {
                // docker's code for whatever its daemon refuses (not running, already paused).
                errln!("hx: {}", super::one_line(&e));
                code = 1;
            }
        }
    }
    if !domains.is_empty() {
        let ctx = &domain::open()?;
        let c = domain::each(ctx, &domains, verb, |id| async move {
            if pause {
                ctx.pause(id).await?;
            } else {
                ctx.unpause(id).await?;
            }
            Ok(())
        })
        .await;
        if c != 0 {
            code = c;
        }
    }
    Ok(code)
}

fn is_no_such_container(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<HxError>(),
        Some(HxError::NoSuchContainer(_))
    )
}

fn one(root: &std::path::Path, c: &container::Container, pause: bool) -> anyhow::Result<()> {
    let be = backend::for_container(c, root)?;
    if c.status != Status::Running || !be.is_running(c) {
        anyhow::bail!("container {} is not running", c.name);
    }
    if !be.can_pause() {
        anyhow::bail!("container {}: its backend cannot pause", c.name);
    }
    let dir = container::dir(root, &c.id);
    match (pause, be.is_paused(c, &dir)) {
        (true, true) => anyhow::bail!("container {} is already paused", c.name),
        (false, false) => anyhow::bail!("container {} is not paused", c.name),
        (true, false) => be.pause(c, &dir),
        (false, true) => be.unpause(c, &dir),
    }
}

/// Whether a running container's VM is paused now (asked of its backend; false if unknown).
pub fn is_paused(root: &std::path::Path, c: &container::Container) -> bool {
    c.status == Status::Running
        && backend::for_container(c, root)
            .is_ok_and(|be| be.is_paused(c, &container::dir(root, &c.id)))
}

/// A paused guest cannot act on a signal: `hx stop` and `hx kill` thaw it first, so the
/// workload gets the signal and can shut down cleanly.
pub fn thaw_for_signal(
    be: &dyn backend::Backend,
    c: &container::Container,
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    if be.is_paused(c, dir) {
        be.unpause(c, dir)?;
    }
    Ok(())
}
