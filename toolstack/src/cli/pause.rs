//! `hx pause NAME...`: freeze hx containers (docker's pause: the VM's vCPUs stop, QEMU through
//! QMP, Xen the domain) and, on a Xen dom0, any other domain as `xl pause` does.
use super::domain;
use hx_engine::container;
use hx_engine::HxError;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Containers (name or id), or on Xen any domain (name or id)
    #[arg(required = true)]
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::candidates::containers))]
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
                tokio::task::spawn_blocking(move || hx_engine::ops::pause(&root, &c, pause)).await?
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

/// Whether a running container's VM is paused now (asked of its backend; false if unknown).
pub use hx_engine::ops::is_paused;
