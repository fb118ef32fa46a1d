//! `hx network-attach DOMAIN KEY=VALUE...`, `hx network-detach DOMAIN DEVID|MAC`,
//! `hx network-list DOMAIN...`: vifs on running domains, hx containers included (a second NIC
//! the guest sees as eth1), as xl's. Keys are xl's vif keys (`bridge`, `mac`, `ip`, `vifname`,
//! `script`, `model`, `type`, `rate`).
use super::domain;
use xen_bindings::NicInfo;

#[derive(clap::Args, Debug)]
pub struct AttachArgs {
    /// Domain (name, id or hx container)
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::candidates::containers))]
    pub domain: String,
    /// vif settings, e.g. `bridge=xenbr0 mac=00:16:3e:00:00:01`
    pub settings: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct DetachArgs {
    /// Domain (name, id or hx container)
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::candidates::containers))]
    pub domain: String,
    /// The vif's devid (as network-list shows it) or its MAC address
    pub device: String,
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Domains (name, id or hx container)
    #[arg(required = true)]
    pub domains: Vec<String>,
}

pub fn header() -> String {
    format!(
        "{:<3} {:<2} {:<17} {:<6} {:<5} {:<6} {:>5}/{:<5} {:<30}\n",
        "Idx", "BE", "Mac Addr.", "handle", "state", "evt-ch", "tx-", "rx-ring-ref", "BE-path"
    )
}

pub fn row(n: &NicInfo) -> String {
    let m = n.mac;
    format!(
        "{:<3} {:<2} {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}{:>6} {:>5} {:>6} {:>5}/{:<11} {:<30}\n",
        n.devid,
        n.backend_id,
        m[0],
        m[1],
        m[2],
        m[3],
        m[4],
        m[5],
        n.devid,
        n.state,
        n.evtch,
        n.rref_tx,
        n.rref_rx,
        n.backend
    )
}

pub async fn attach(_g: &super::Globals, args: AttachArgs) -> anyhow::Result<i32> {
    let vif = xen_bindings::xlcfg::parse_vif(&args.settings.join(","))
        .and_then(|v| xen_bindings::xlcfg::nic_from_vif(&v))
        .map_err(|e| super::Fixed::wrap(1, e.into()))?;
    let ctx = domain::open()?;
    let id = domain::resolve(&ctx, &args.domain)?;
    ctx.nic_attach(id, vif).await?;
    Ok(0)
}

pub async fn detach(_g: &super::Globals, args: DetachArgs) -> anyhow::Result<i32> {
    let ctx = domain::open()?;
    let id = domain::resolve(&ctx, &args.domain)?;
    ctx.nic_detach(id, &args.device)
        .await
        .map_err(|e| super::Fixed::wrap(1, e.into()))?;
    Ok(0)
}

pub async fn list(_g: &super::Globals, args: ListArgs) -> anyhow::Result<i32> {
    let ctx = domain::open()?;
    let ids: Vec<u32> = args
        .domains
        .iter()
        .map(|d| domain::resolve(&ctx, d))
        .collect::<anyhow::Result<_>>()?;
    let mut out = header();
    for id in ids {
        for n in ctx.nics(id)? {
            out.push_str(&row(&n));
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
            header(),
            "Idx BE Mac Addr.         handle state evt-ch   tx-/rx-ring-ref BE-path                       \n"
        );
        let n = NicInfo {
            devid: 0,
            backend_id: 0,
            mac: [0, 0x16, 0x3e, 1, 2, 3],
            state: 4,
            evtch: 10,
            rref_tx: 768,
            rref_rx: 769,
            backend: "/local/domain/0/backend/vif/3/0".into(),
        };
        assert_eq!(
            row(&n),
            "0   0  00:16:3e:01:02:03     0     4     10   768/769         /local/domain/0/backend/vif/3/0\n"
        );
    }
}
