//! `hx network-attach DOMAIN KEY=VALUE...`, `hx network-detach DOMAIN DEVID|MAC`,
//! `hx network-list DOMAIN...`: vifs on running domains, hx containers included (a second NIC
//! the guest sees as eth1), as xl's. Keys are xl's vif keys (`bridge`, `mac`, `ip`, `vifname`,
//! `script`, `model`, `type`, `rate`).
use super::domain;
use xen_bindings::{NicInfo, Xenstore};

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

pub async fn attach(g: &super::Globals, args: AttachArgs) -> anyhow::Result<i32> {
    let bad = |e: anyhow::Error| super::Fixed::wrap(1, e);
    let mut vif =
        xen_bindings::xlcfg::parse_vif(&args.settings.join(",")).map_err(|e| bad(e.into()))?;
    let ctx = domain::open()?;
    let id = domain::resolve(&ctx, &args.domain)?;
    // An hx container's guest configures the new NIC itself when `ip=` has a prefix.
    let container = Xenstore::open()
        .ok()
        .and_then(|xs| domain::hx_container(&xs, id))
        .and_then(|cid| hx_engine::container::find(&g.root, &cid).ok());
    let guest_address = match (&container, vif.ip.as_deref()) {
        (Some(_), Some(ip)) => {
            let (addr, prefix) = guest_cidr(ip).map_err(bad)?;
            // libxl's (and the hotplug script's) ip is the bare address.
            vif.ip = Some(addr.to_string());
            Some((addr, prefix))
        }
        _ => None,
    };
    let nic = xen_bindings::xlcfg::nic_from_vif(&vif).map_err(|e| bad(e.into()))?;
    let before: Vec<i32> = ctx.nics(id)?.iter().map(|n| n.devid).collect();
    ctx.nic_attach(id, nic).await?;
    let (Some(c), Some((addr, prefix))) = (container, guest_address) else {
        return Ok(0);
    };
    let new = ctx
        .nics(id)?
        .into_iter()
        .find(|n| !before.contains(&n.devid))
        .ok_or_else(|| anyhow::anyhow!("the new vif of domain {id} is not listed"))?;
    let name = guest_name(&c, new.devid);
    if let Err(e) =
        hx_engine::ops::configure_hotplugged_nic(&g.root, &c, &name, new.mac, addr, prefix)
    {
        // Not configured: not left behind either.
        let _ = ctx.nic_detach(id, &new.devid.to_string()).await;
        return Err(bad(e));
    }
    Ok(0)
}

/// The guest's name for the container's new vif `devid`: netfront's numbering (vif 1 is eth1),
/// or the first free `ethN` when the container's interfaces took that name already (a VM on a
/// namespace's eth0, eth2 has vifs 0 and 1).
fn guest_name(c: &hx_engine::container::Container, devid: i32) -> String {
    let taken: Vec<&str> = c
        .network
        .iter()
        .flat_map(|n| {
            std::iter::once(hx_engine::network::NETNS_LINK)
                .chain(n.extra_links.iter().map(|x| x.link.as_str()))
        })
        .collect();
    let want = format!("eth{devid}");
    if !taken.contains(&want.as_str()) {
        return want;
    }
    (1..)
        .map(|n| format!("eth{n}"))
        .find(|n| !taken.contains(&n.as_str()))
        .expect("a free name")
}

/// `ip=10.99.0.2/24` for an hx container: the address and prefix its guest takes.
fn guest_cidr(ip: &str) -> anyhow::Result<(std::net::Ipv4Addr, u8)> {
    let (a, p) = ip.split_once('/').ok_or_else(|| {
        anyhow::anyhow!(
            "ip={ip}: an hx container's NIC needs a prefix (ip={ip}/24) to configure it"
        )
    })?;
    let addr: std::net::Ipv4Addr = a
        .parse()
        .map_err(|_| anyhow::anyhow!("ip={ip}: {a:?} is not an IPv4 address"))?;
    let prefix: u8 = p
        .parse()
        .ok()
        .filter(|p| (1..=32).contains(p))
        .ok_or_else(|| anyhow::anyhow!("ip={ip}: prefix {p:?} is not 1 to 32"))?;
    if !hx_engine::ops::guest_takes_address(addr, prefix) {
        anyhow::bail!("ip={ip}: not a unicast address a NIC can have");
    }
    Ok((addr, prefix))
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
    fn an_hx_containers_ip_needs_a_prefix() {
        assert_eq!(
            guest_cidr("10.99.0.2/24").unwrap(),
            ("10.99.0.2".parse().unwrap(), 24)
        );
        for bad in [
            "10.99.0.2",
            "10.99.0.2/0",
            "10.99.0.2/33",
            "127.0.0.2/8",
            "224.0.0.1/4",
            "0.0.0.0/24",
            "255.255.255.255/32",
            "x/24",
            "10.99.0.2/x",
        ] {
            assert!(guest_cidr(bad).is_err(), "{bad}");
        }
    }

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
