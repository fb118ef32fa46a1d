//! `hx block-attach DOMAIN SPEC...`, `hx block-detach DOMAIN VDEV`, `hx block-list DOMAIN...`:
//! disks on running domains, hx containers included (the guest sees a new /dev/xvdX), as xl's.
//! SPEC is xl's disk syntax, parsed by libxlutil.
use super::domain;
use xen_bindings::BlockInfo;

#[derive(clap::Args, Debug)]
pub struct AttachArgs {
    /// Domain (name, id or hx container)
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::candidates::containers))]
    pub domain: String,
    /// The disk in xl's syntax, e.g. `format=raw,vdev=xvdz,access=rw,target=/srv/d.img`
    #[arg(required = true, num_args = 1..)]
    pub spec: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct DetachArgs {
    /// Remove it even if the guest does not let go (libxl's plain remove, as xl's -f)
    #[arg(short, long)]
    pub force: bool,
    /// Domain (name, id or hx container)
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::candidates::containers))]
    pub domain: String,
    /// The guest's device name (xvdz) or its number
    pub vdev: String,
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Domains (name, id or hx container)
    #[arg(required = true)]
    pub domains: Vec<String>,
}

pub const HEADER: &str = "Vdev  BE  handle state evt-ch ring-ref BE-path                       \n";

pub fn row(b: &BlockInfo) -> String {
    format!(
        "{:<5} {:<3} {:<6} {:<5} {:<6} {:<8} {:<30}\n",
        b.devid, b.backend_id, b.frontend_id, b.state, b.evtch, b.rref, b.backend
    )
}

pub async fn attach(_g: &super::Globals, args: AttachArgs) -> anyhow::Result<i32> {
    let disk = xen_bindings::xlcfg::disk_from_specs(&args.spec)
        .map_err(|e| super::Fixed::wrap(1, e.into()))?;
    let ctx = domain::open()?;
    let id = domain::resolve(&ctx, &args.domain)?;
    ctx.disk_attach(id, disk).await?;
    Ok(0)
}

pub async fn detach(_g: &super::Globals, args: DetachArgs) -> anyhow::Result<i32> {
    let ctx = domain::open()?;
    let id = domain::resolve(&ctx, &args.domain)?;
    let done = if args.force {
        ctx.disk_remove(id, &args.vdev).await
    } else {
        ctx.disk_detach(id, &args.vdev).await
    };
    done.map_err(|e| super::Fixed::wrap(1, e.into()))?;
    Ok(0)
}

/// Like xl: a domain that does not exist is reported and skipped, exit 0.
pub async fn list(_g: &super::Globals, args: ListArgs) -> anyhow::Result<i32> {
    let ctx = domain::open()?;
    let mut out = String::from(HEADER);
    for d in &args.domains {
        match domain::resolve(&ctx, d) {
            Ok(id) => {
                for b in ctx.disks(id)? {
                    out.push_str(&row(&b));
                }
            }
            Err(e) => errln!("hx: {}", super::one_line(&e)),
        }
    }
    domain::print(&out)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_up_with_xl() {
        assert_eq!(
            HEADER,
            format!(
                "{:<5} {:<3} {:<6} {:<5} {:<6} {:<8} {:<30}\n",
                "Vdev", "BE", "handle", "state", "evt-ch", "ring-ref", "BE-path"
            )
        );
        let b = BlockInfo {
            devid: 51712,
            backend_id: 0,
            frontend_id: 3,
            state: 4,
            evtch: 9,
            rref: 8,
            backend: "/local/domain/0/backend/vbd/3/51712".into(),
        };
        assert_eq!(
            row(&b),
            "51712 0   3      4     9      8        /local/domain/0/backend/vbd/3/51712\n"
        );
    }
}
