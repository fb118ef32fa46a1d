//! Container networking, the same for every backend (docs/networking.md).
//!
//! As root a container gets an address on a host bridge (`hx0`, made on demand), outbound NAT
//! and published ports in hx's own nftables table; the backend only plugs the guest into the
//! bridge (QEMU: a tap, `tap::open`; Xen: a vif with `bridge=`, see `NicKind::Bridge`). As a
//! user, QEMU's user-mode networking (slirp) gives the same guest view and `-p` forwards.
//! Everything made for a container is released when its VM is gone (`release`), and
//! `reconcile` repairs what a crash left (rules of dead containers, rules lost from a running
//! one, addresses of containers that no longer run).
pub mod bridge;
pub mod dns;
pub mod dns_relay;
pub mod dns_wire;
pub mod ipam;
pub mod nat;
pub mod netns_link;
pub mod ports;
pub mod resolver;
pub mod tap;
pub mod user_net;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::OwnedFd;
use std::path::Path;

pub use ports::Published;

pub const DEFAULT_BRIDGE: &str = "hx0";
/// The interface `--network ns:PATH` takes over in that namespace.
pub const NETNS_LINK: &str = "eth0";
/// hx0's own address and prefix; containers get the others.
pub const DEFAULT_BRIDGE_ADDR: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 88, 0, 1), 16);
/// QEMU user-mode networking's fixed layout (slirp defaults).
const USER_GUEST: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
const USER_GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
const USER_DNS: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 3);

/// `--network`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    None,
    Bridge(String),
    /// `ns:PATH` (podman's syntax): take over `eth0` of the network namespace at PATH, which
    /// someone else made and configured (netns_link.rs).
    Netns(std::path::PathBuf),
    /// A user network by name or id (`hx network create`, user_net.rs).
    Network(String),
}

impl Mode {
    pub fn parse(s: Option<&str>) -> anyhow::Result<Mode> {
        match s {
            None | Some("bridge") | Some("default") => Ok(Mode::Bridge(DEFAULT_BRIDGE.into())),
            Some("none") => Ok(Mode::None),
            Some("host") => bail!(
                "--network host: not possible, every container is a VM with its own kernel (publish ports with -p)"
            ),
            Some(s) if s.starts_with("ns:") => {
                let path = std::path::PathBuf::from(&s[3..]);
                if !path.is_absolute() {
                    bail!("--network {s:?}: ns: takes the absolute path of a network namespace (/run/netns/NAME, /proc/PID/ns/net)");
                }
                Ok(Mode::Netns(path))
            }
            Some(s) => match s.strip_prefix("bridge=") {
                Some(name) if bridge::valid_ifname(name) => Ok(Mode::Bridge(name.into())),
                Some(name) => bail!("--network bridge={name}: not a valid interface name"),
                None if user_net::valid_name(s) => Ok(Mode::Network(s.into())),
                None => bail!("--network {s:?}: use bridge, bridge=NAME, ns:PATH, none or a network's name"),
            },
        }
    }
}

/// What a container's network is, kept in its state (container.json) for release/reconcile,
/// `hx port` and `hx inspect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkState {
    /// `bridge`, `user` (QEMU slirp, when not root) or `none`.
    pub mode: String,
    #[serde(default)]
    pub bridge: Option<String>,
    #[serde(default)]
    pub ip: Option<Ipv4Addr>,
    #[serde(default)]
    pub prefix_len: u8,
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
    #[serde(default)]
    pub mac: Option<String>,
    /// Host side of the guest's NIC (QEMU tap or Xen vif name).
    #[serde(default)]
    pub ifname: Option<String>,
    #[serde(default)]
    pub ports: Vec<Published>,
    /// Mode `netns`: the namespace (a path) and the interface in it the VM took over
    /// (`ifname` is the VM's own interface there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<std::path::PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// The namespace's inode when the VM took it over: a /proc/PID/ns/net path of a reused
    /// pid names another namespace, which `release` must leave alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns_inode: Option<u64>,
    /// On a user network: its id, and the container's `--network-alias`es.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// On a `--ipv6` user network: the container's IPv6 address, prefix length and gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<Ipv6Addr>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub prefix_len6: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<Ipv6Addr>,
    /// Mode `netns`: the namespace's further interfaces the VM took over too (a container on
    /// several networks: docker's eth1...), each with the VM's interface mirrored to it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_links: Vec<ExtraLink>,
}

/// One further interface of a namespace and the VM's interface mirrored to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtraLink {
    pub link: String,
    pub ifname: String,
}

fn is_zero(n: &u8) -> bool {
    *n == 0
}

/// How the backend connects the guest's NIC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NicKind {
    /// Plug into this host bridge under this host interface name. QEMU: `tap::open(ifname)`,
    /// `bridge::enslave(ifname, bridge)`, then `-netdev tap,fd=`. Xen: a libxl nic with
    /// `bridge=<bridge>`, `vifname=<ifname>`, `mac=<mac>` (the vif-bridge hotplug script
    /// enslaves it); ports and NAT need nothing more from the backend.
    Bridge { bridge: String, ifname: String },
    /// QEMU user-mode networking with host forwards for the published ports.
    User { ports: Vec<Published> },
    /// Take over `link` of a namespace someone else made (docker's, a CNI plugin's):
    /// `netns_link::attach_tap(netns, link, ifname)` on QEMU, whose fd becomes
    /// `-netdev tap,fd=`; the VM's MAC is `link`'s. See `netns_setup`.
    Netns {
        netns: std::path::PathBuf,
        link: String,
        ifname: String,
    },
}

/// The guest NIC a backend must create.
#[derive(Debug)]
pub struct VmNic {
    pub mac: String,
    pub kind: NicKind,
    /// Sockets bound to the published host ports (bridge mode). The backend keeps them open
    /// exactly as long as the VM runs (QEMU inherits them; a Xen backend hands them to the
    /// process that lives with the domain), so a port is taken while, and only while, the
    /// container runs, and nothing else on the host can bind it meanwhile.
    pub hold: Vec<OwnedFd>,
}

/// Result of `setup`: what to record, what the backend must create, what pv-init configures.
pub struct Setup {
    pub state: NetworkState,
    pub nic: Option<VmNic>,
    /// Further NICs (mode `netns` only: one per further interface of the namespace).
    pub extra_nics: Vec<VmNic>,
    pub guest: Option<pv_init::spec::Network>,
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A short stable id of the store, so that rules of two stores in one network namespace
/// never touch each other.
pub fn store_key(root: &Path) -> String {
    use sha2::Digest;
    let p = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    hex::encode(&sha2::Sha256::digest(p.to_string_lossy().as_bytes())[..4])
}

/// Host interface name for a container's NIC (15 characters at most).
pub fn ifname_for(id: &str) -> String {
    format!("hx-{}", &id[..12])
}

/// docker's scheme: 02:42 then the IPv4 address.
fn mac_for(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

/// Makes the container's network: address, NAT, published ports. `taken` are the ports other
/// containers of this store publish (for a clear "allocated to" error). Undoes its own work
/// on failure.
pub fn setup(
    root: &Path,
    id: &str,
    mode: &Mode,
    requests: &[ports::Request],
    taken: &[(String, Published)],
    preferred_ip: Option<Ipv4Addr>,
    on_net: &OnNetwork,
) -> anyhow::Result<Setup> {
    if !matches!(mode, Mode::Network(_)) {
        if on_net.ip6.is_some() {
            bail!("user specified IPv6 address (--ip6) is supported on user defined networks with --ipv6 only");
        }
        if on_net.ip.is_some() {
            bail!("user specified IP address is supported on user defined networks only");
        }
        if !on_net.aliases.is_empty() {
            bail!("network-scoped alias is supported only for containers in user defined networks");
        }
    }
    let bridge_name = match mode {
        Mode::Network(key) => {
            // Exit code 125 from run/create/start, as docker's "network … not found".
            let net = user_net::find(root, key).map_err(|e| anyhow::anyhow!("{e}"))?;
            if !is_root() {
                bail!("--network {key} needs root (a user network is a host bridge)");
            }
            if net.internal && !requests.is_empty() {
                bail!(
                    "-p/-P cannot be used on network {} (it is --internal)",
                    net.name
                );
            }
            return user_network_setup(root, id, &net, requests, taken, preferred_ip, on_net);
        }
        Mode::None => {
            if !requests.is_empty() {
                bail!("-p/-P need a network: they cannot be used with --network none");
            }
            return Ok(Setup {
                state: NetworkState {
                    mode: "none".into(),
                    bridge: None,
                    ip: None,
                    prefix_len: 0,
                    gateway: None,
                    mac: None,
                    ifname: None,
                    ports: vec![],
                    netns: None,
                    link: None,
                    netns_inode: None,
                    network: None,
                    aliases: vec![],
                    ip6: None,
                    prefix_len6: 0,
                    gateway6: None,
                    extra_links: vec![],
                },
                nic: None,
                extra_nics: vec![],
                guest: None,
            });
        }
        Mode::Bridge(b) => b.clone(),
        Mode::Netns(path) => {
            if !requests.is_empty() {
                bail!("-p/-P cannot be used with --network ns:PATH (the namespace's owner publishes ports)");
            }
            if !is_root() {
                bail!("--network ns:PATH needs root");
            }
            return netns_setup(path, NETNS_LINK, &dns::host_resolv());
        }
    };
    let resolv = dns::host_resolv();
    if !is_root() {
        if bridge_name != DEFAULT_BRIDGE {
            bail!("--network bridge={bridge_name} needs root (as a user, hx gives containers QEMU's user-mode network)");
        }
        let published = ports::check_free(requests, taken)?;
        let mac = mac_for(USER_GUEST);
        return Ok(Setup {
            state: NetworkState {
                mode: "user".into(),
                bridge: None,
                ip: Some(USER_GUEST),
                prefix_len: 24,
                gateway: Some(USER_GATEWAY),
                mac: Some(mac.clone()),
                ifname: None,
                ports: published.clone(),
                netns: None,
                link: None,
                netns_inode: None,
                network: None,
                aliases: vec![],
                ip6: None,
                prefix_len6: 0,
                gateway6: None,
                extra_links: vec![],
            },
            nic: Some(VmNic {
                mac: mac.clone(),
                kind: NicKind::User { ports: published },
                hold: vec![],
            }),
            extra_nics: vec![],
            guest: Some(guest_config(
                &mac,
                USER_GUEST,
                24,
                USER_GATEWAY,
                vec![USER_DNS.to_string()],
                &resolv,
            )),
        });
    }
    let (gateway, prefix) = bridge::ensure(&bridge_name)?;
    nat::ensure_base(&bridge_name, gateway, prefix)?;
    // Only once the guard against packets to 127.0.0.0/8 from outside is in place.
    bridge::allow_localnet(&bridge_name)?;
    let dns = if resolv.nameservers.is_empty() {
        tracing::warn!(
            "no usable nameserver in the host's resolv.conf: containers get 8.8.8.8 and 8.8.4.4"
        );
        vec!["8.8.8.8".into(), "8.8.4.4".into()]
    } else {
        resolv.nameservers.clone()
    };
    on_bridge(
        root,
        id,
        &bridge_name,
        (gateway, prefix),
        requests,
        taken,
        preferred_ip,
        None,
        dns,
    )
}

/// Who a container is on a user network: `--ip`, `--network-alias`, and its name (what the
/// network's resolver answers for).
#[derive(Debug, Default, Clone)]
pub struct OnNetwork {
    pub name: String,
    pub ip: Option<Ipv4Addr>,
    pub aliases: Vec<String>,
    /// `--ip6` (a `--ipv6` network only), and the address the container had before (a
    /// restart gets it back when free).
    pub ip6: Option<Ipv6Addr>,
    pub preferred_ip6: Option<Ipv6Addr>,
}

/// A container on user network `net`: its bridge (made again after a reboot), an address
/// (`--ip`'s, else its old one or the lowest free), ports, its endpoint and the network's
/// resolver, which its resolv.conf names.
fn user_network_setup(
    root: &Path,
    id: &str,
    net: &user_net::UserNet,
    requests: &[ports::Request],
    taken: &[(String, Published)],
    preferred_ip: Option<Ipv4Addr>,
    on_net: &OnNetwork,
) -> anyhow::Result<Setup> {
    for a in &on_net.aliases {
        if !user_net::valid_alias(a) {
            bail!("--network-alias {a:?}: not a valid DNS name");
        }
    }
    user_net::ensure(net)?;
    let bridge_name = net.bridge();
    let prefix = net.prefix();
    let fixed = match on_net.ip {
        Some(ip) => {
            let marker = root.join(ipam::DIR);
            std::fs::create_dir_all(&marker)
                .with_context(|| format!("creating {}", marker.display()))?;
            let lease = ipam::Pools::host()?.allocate_fixed(
                &ipam::Owner::of(root, id),
                &bridge_name,
                net.gateway,
                prefix,
                ip,
            )?;
            Some((ip, lease))
        }
        None => None,
    };
    let mut made = on_bridge(
        root,
        id,
        &bridge_name,
        (net.gateway, prefix),
        requests,
        taken,
        preferred_ip,
        fixed,
        vec![net.gateway.to_string()],
    )?;
    let undo = |made: &Setup| {
        let _ = release(root, id, &made.state);
    };
    let ip = made.state.ip.expect("on_bridge gives an address");
    made.state.network = Some(net.id.clone());
    made.state.aliases = on_net.aliases.clone();
    if let Err(e) = add_ipv6(root, id, net, on_net, &mut made) {
        undo(&made);
        return Err(e);
    }
    let endpoint = user_net::Endpoint {
        id: id.to_string(),
        name: on_net.name.clone(),
        aliases: on_net.aliases.clone(),
        ip,
        ip6: made.state.ip6,
    };
    if let Err(e) =
        user_net::add_endpoint(root, &net.id, &endpoint).and_then(|()| resolver::ensure(root, net))
    {
        undo(&made);
        return Err(e);
    }
    Ok(made)
}

/// A `--ipv6` network's part of a container's setup: its IPv6 address (`--ip6`'s, else its old
/// one when free, else the lowest free one of the network's subnet) from the bridge's v6 pool,
/// whose lease file the VM holds like the v4 one, in the record and the guest's config.
fn add_ipv6(
    root: &Path,
    id: &str,
    net: &user_net::UserNet,
    on_net: &OnNetwork,
    made: &mut Setup,
) -> anyhow::Result<()> {
    let Some((subnet6, gateway6)) = net.ipv6()? else {
        if let Some(ip6) = on_net.ip6 {
            bail!(
                "--ip6 {ip6}: network {} has no IPv6 (create it with --ipv6)",
                net.name
            );
        }
        return Ok(());
    };
    let pools = ipam::Pools::host()?;
    let owner = ipam::Owner::of(root, id);
    let bridge = net.bridge();
    let (ip6, lease) = match on_net.ip6 {
        Some(ip6) => {
            let fd = pools.allocate_fixed(&owner, &bridge, gateway6, subnet6.prefix, ip6)?;
            (ip6, fd)
        }
        None => pools.allocate(
            &owner,
            &bridge,
            gateway6,
            subnet6.prefix,
            on_net.preferred_ip6,
        )?,
    };
    made.state.ip6 = Some(ip6);
    made.state.prefix_len6 = subnet6.prefix;
    made.state.gateway6 = Some(gateway6);
    if let Some(nic) = made.nic.as_mut() {
        nic.hold.push(lease);
    }
    if let Some(g) = made.guest.as_mut() {
        g.address6 = Some(format!("{ip6}/{}", subnet6.prefix));
        g.gateway6 = Some(gateway6.to_string());
    }
    Ok(())
}

/// Address (`leased` already, else the preferred one if free, else the lowest free one),
/// ports and NIC on a bridge that is up with `gateway`/`prefix`.
#[allow(clippy::too_many_arguments)]
fn on_bridge(
    root: &Path,
    id: &str,
    bridge_name: &str,
    (gateway, prefix): (Ipv4Addr, u8),
    requests: &[ports::Request],
    taken: &[(String, Published)],
    preferred_ip: Option<Ipv4Addr>,
    leased: Option<(Ipv4Addr, OwnedFd)>,
    dns: Vec<String>,
) -> anyhow::Result<Setup> {
    let bridge_name = bridge_name.to_string();
    let resolv = dns::host_resolv();
    let marker = root.join(ipam::DIR);
    std::fs::create_dir_all(&marker).with_context(|| format!("creating {}", marker.display()))?;
    let pools = ipam::Pools::host()?;
    let owner = ipam::Owner::of(root, id);
    let (ip, lease) = match leased {
        Some(l) => l,
        None => pools.allocate(&owner, &bridge_name, gateway, prefix, preferred_ip)?,
    };
    let ifname = ifname_for(id);
    let mac = mac_for(ip);
    let undo = || {
        let _ = pools.release(&owner, &bridge_name);
    };
    let reserved = match ports::reserve(requests, taken) {
        Ok(r) => r,
        Err(e) => {
            undo();
            return Err(e);
        }
    };
    let published: Vec<Published> = reserved.iter().map(|r| r.published.clone()).collect();
    if let Err(e) = nat::add_ports(&store_key(root), id, &bridge_name, ip, &published) {
        undo();
        return Err(e);
    }
    Ok(Setup {
        state: NetworkState {
            mode: "bridge".into(),
            bridge: Some(bridge_name.clone()),
            ip: Some(ip),
            prefix_len: prefix,
            gateway: Some(gateway),
            mac: Some(mac.clone()),
            ifname: Some(ifname.clone()),
            ports: published,
            netns: None,
            link: None,
            netns_inode: None,
            network: None,
            aliases: vec![],
            ip6: None,
            prefix_len6: 0,
            gateway6: None,
            extra_links: vec![],
        },
        nic: Some(VmNic {
            mac: mac.clone(),
            kind: NicKind::Bridge {
                bridge: bridge_name,
                ifname,
            },
            hold: std::iter::once(lease)
                .chain(reserved.into_iter().map(|r| r.socket))
                .collect(),
        }),
        extra_nics: vec![],
        guest: Some(guest_config(&mac, ip, prefix, gateway, dns, &resolv)),
    })
}

/// The network of a VM that takes over interface `link` of namespace `netns` (a path such as
/// /proc/PID/ns/net or /run/netns/NAME; docker's container namespace and its `eth0`): reads
/// the interface's MAC, IPv4 address, prefix, default gateway and MTU, and returns what to
/// record, the NIC for the backend (`NicKind::Netns`, the VM's interface `netns_link::DEFAULT_TAP`
/// inside the namespace, made when the VM starts) and the guest's configuration with
/// `resolv`'s DNS settings (e.g. the bundle's resolv.conf, `dns::parse`). Nothing is changed
/// in the namespace until the backend starts the VM; `release` undoes that.
pub fn netns_setup(netns: &Path, link: &str, resolv: &dns::Resolv) -> anyhow::Result<Setup> {
    let inode = netns_link::inode(netns)?;
    let info = netns_link::inspect(netns, link)?;
    let ifname = netns_link::DEFAULT_TAP.to_string();
    let mut guest = guest_config(
        &info.mac,
        info.address,
        info.prefix,
        info.gateway.unwrap_or(Ipv4Addr::UNSPECIFIED),
        resolv.nameservers.clone(),
        resolv,
    );
    if info.gateway.is_none() {
        guest.gateway = None;
    }
    if let Some((ip6, prefix6)) = info.address6 {
        guest.address6 = Some(format!("{ip6}/{prefix6}"));
        guest.gateway6 = info.gateway6.map(|g| g.to_string());
    }
    guest.mtu = Some(info.mtu);
    guest.dns_relay = Some(dns_relay::guest_config());
    // A container on several networks: every further veth gets a NIC of its own.
    let mut others = netns_link::other_links(netns, link)?;
    if others.len() > pv_init::spec::MAX_EXTRA_INTERFACES {
        tracing::warn!(
            "network namespace {} has {} further interfaces: the VM takes the first {}",
            netns.display(),
            others.len(),
            pv_init::spec::MAX_EXTRA_INTERFACES
        );
        others.truncate(pv_init::spec::MAX_EXTRA_INTERFACES);
    }
    let mut extra_links = Vec::new();
    let mut extra_nics = Vec::new();
    // `inspect` takes a default route through another interface for want of one through
    // its own; with several, each gateway goes with the interface its route leaves through.
    let (dev4, dev6) = if others.is_empty() {
        (None, None)
    } else {
        (
            netns_link::default_route_dev(netns, false)?,
            netns_link::default_route_dev(netns, true)?,
        )
    };
    let owns = |dev: &Option<String>, l: &str| dev.as_deref().is_none_or(|d| d == l);
    if !owns(&dev4, link) {
        guest.gateway = None;
    }
    if !owns(&dev6, link) {
        guest.gateway6 = None;
    }
    let mut macs = vec![info.mac.clone()];
    for other in &others {
        let mut x = netns_link::inspect(netns, other)?;
        // The guest finds its NICs by MAC: a second one with a MAC taken is left out.
        if macs.contains(&x.mac) {
            tracing::warn!(
                "{other} in {} has the MAC of another interface: the VM does not take it",
                netns.display()
            );
            continue;
        }
        macs.push(x.mac.clone());
        let n = extra_nics.len();
        if dev4.as_deref() != Some(other) {
            x.gateway = None;
        }
        if dev6.as_deref() != Some(other) {
            x.gateway6 = None;
        }
        let tap = format!("{}{}", netns_link::TAP_PREFIX, n + 1);
        guest.extra.push(pv_init::spec::Interface {
            interface: other.clone(),
            mac: x.mac.clone(),
            address: format!("{}/{}", x.address, x.prefix),
            gateway: x.gateway.map(|g| g.to_string()),
            mtu: Some(x.mtu),
            address6: x.address6.map(|(ip, p)| format!("{ip}/{p}")),
            gateway6: x.gateway6.map(|g| g.to_string()),
        });
        extra_links.push(ExtraLink {
            link: other.clone(),
            ifname: tap.clone(),
        });
        extra_nics.push(VmNic {
            mac: x.mac,
            kind: NicKind::Netns {
                netns: netns.to_path_buf(),
                link: other.clone(),
                ifname: tap,
            },
            hold: vec![],
        });
    }
    Ok(Setup {
        state: NetworkState {
            mode: "netns".into(),
            bridge: None,
            ip: Some(info.address),
            prefix_len: info.prefix,
            gateway: guest.gateway.as_ref().and(info.gateway),
            mac: Some(info.mac.clone()),
            ifname: Some(ifname.clone()),
            ports: vec![],
            netns: Some(netns.to_path_buf()),
            link: Some(link.to_string()),
            netns_inode: Some(inode),
            network: None,
            aliases: vec![],
            ip6: info.address6.map(|(ip, _)| ip),
            prefix_len6: info.address6.map_or(0, |(_, p)| p),
            gateway6: guest.gateway6.as_ref().and(info.gateway6),
            extra_links,
        },
        nic: Some(VmNic {
            mac: info.mac,
            kind: NicKind::Netns {
                netns: netns.to_path_buf(),
                link: link.to_string(),
                ifname,
            },
            hold: vec![],
        }),
        extra_nics,
        guest: Some(guest),
    })
}

fn guest_config(
    mac: &str,
    ip: Ipv4Addr,
    prefix: u8,
    gateway: Ipv4Addr,
    dns: Vec<String>,
    resolv: &dns::Resolv,
) -> pv_init::spec::Network {
    pv_init::spec::Network {
        interface: "eth0".into(),
        address: format!("{ip}/{prefix}"),
        gateway: Some(gateway.to_string()),
        dns,
        hosts: vec![],
        dns_search: resolv.search.clone(),
        dns_options: resolv.options.clone(),
        mtu: None,
        dns_relay: None,
        mac: Some(mac.to_string()),
        address6: None,
        gateway6: None,
        extra: vec![],
    }
}

/// Releases what `setup` made for a container whose VM is gone: its port rules, its address,
/// and its host interface if the backend left it. Safe to call twice.
pub fn release(root: &Path, id: &str, state: &NetworkState) -> anyhow::Result<()> {
    if let (Some(ns), Some(link), Some(ifname), "netns") = (
        &state.netns,
        &state.link,
        &state.ifname,
        state.mode.as_str(),
    ) {
        return match (state.netns_inode, netns_link::inode(ns)) {
            (Some(recorded), Ok(now)) if recorded == now => {
                // Each one tried, whatever the others do; the first failure reported.
                let mut result = Ok(());
                for (l, i) in state
                    .extra_links
                    .iter()
                    .map(|x| (x.link.as_str(), x.ifname.as_str()))
                    .chain([(link.as_str(), ifname.as_str())])
                {
                    let r = netns_link::detach(ns, l, i);
                    if result.is_ok() {
                        result = r;
                    }
                }
                result
            }
            // Gone, or another namespace under a reused path.
            _ => Ok(()),
        };
    }
    if let Some(net_id) = &state.network {
        user_net::remove_endpoint(root, net_id, id);
    }
    if state.mode != "bridge" || !is_root() {
        return Ok(());
    }
    if !state.ports.is_empty() {
        nat::remove_container(&store_key(root), id)?;
    }
    if let Some(b) = &state.bridge {
        ipam::Pools::host()?.release(&ipam::Owner::of(root, id), b)?;
    }
    if let Some(ifname) = &state.ifname {
        bridge::delete_link(ifname)?;
    }
    if let Some(net) = state
        .network
        .as_ref()
        .and_then(|n| user_net::find(root, n).ok())
    {
        resolver::stop_if_idle(root, &net, id);
    }
    Ok(())
}

/// After a crash or a reboot: rules and addresses of containers that no longer run go, rules a
/// running container lost (a flushed ruleset) come back. `running` are this store's running
/// containers (id, network state).
pub fn reconcile(root: &Path, running: &[(String, NetworkState)]) -> anyhow::Result<()> {
    if !is_root() || !root.join(ipam::DIR).is_dir() {
        return Ok(());
    }
    let live: Vec<&str> = running.iter().map(|(id, _)| id.as_str()).collect();
    let leases: Vec<(String, String, Ipv4Addr)> = running
        .iter()
        .filter(|(_, st)| st.mode == "bridge")
        .filter_map(|(id, st)| Some((id.clone(), st.bridge.clone()?, st.ip?)))
        .collect();
    let leases6: Vec<(String, String, Ipv6Addr)> = running
        .iter()
        .filter(|(_, st)| st.mode == "bridge")
        .filter_map(|(id, st)| Some((id.clone(), st.bridge.clone()?, st.ip6?)))
        .collect();
    let pools = ipam::Pools::host()?;
    let store = ipam::store_root(root);
    pools
        .reconcile(&store, &leases)
        .context("reconciling addresses")?;
    pools
        .reconcile(&store, &leases6)
        .context("reconciling IPv6 addresses")?;
    // A container `hx run` is still starting (outside the store lock) does not run yet, but
    // holds its lease: its rules stay.
    let starting = pools.held(&store);
    // The guard may be gone with a flushed ruleset while containers run.
    let mut bridges: Vec<(&str, Ipv4Addr, u8)> = Vec::new();
    for (_, st) in running {
        if let (Some(b), Some(gw), "bridge") = (&st.bridge, st.gateway, st.mode.as_str()) {
            if !bridges.iter().any(|(n, _, _)| n == b) && bridge::exists(b) {
                bridges.push((b, gw, st.prefix_len));
            }
        }
    }
    for (b, gw, prefix) in bridges {
        nat::ensure_base(b, gw, prefix)?;
    }
    for net in user_net::list(root) {
        let bridge = net.bridge();
        if running
            .iter()
            .any(|(_, st)| st.network.as_ref() == Some(&net.id))
        {
            nat::ensure_user_net(&bridge, &net.subnet, net.internal)?;
            if let (Some(subnet6), Some(_)) = (&net.subnet6, net.gateway6) {
                nat::ensure_user_net6(&bridge, subnet6, net.internal)?;
            }
        }
        for ep in user_net::endpoints(root, &net.id) {
            if !live.contains(&ep.id.as_str()) && !starting.contains(&ep.id) {
                user_net::remove_endpoint(root, &net.id, &ep.id);
            }
        }
    }
    let key = store_key(root);
    let rules = nat::container_rules(&key)?;
    for (id, _) in &rules {
        if !live.contains(&id.as_str()) && !starting.contains(id) {
            tracing::info!("removing the port rules of gone container {id}");
            nat::remove_container(&key, id)?;
        }
    }
    for (id, st) in running {
        if st.mode != "bridge" || st.ports.is_empty() || rules.iter().any(|(r, _)| r == id) {
            continue;
        }
        let (Some(b), Some(ip)) = (&st.bridge, st.ip) else {
            continue;
        };
        tracing::info!("re-creating the port rules of container {id}");
        nat::add_ports(&key, id, b, ip, &st.ports)?;
    }
    Ok(())
}

/// Runs a host tool (ip, nft), with its stderr in the error.
pub(crate) fn run_tool(
    cmd: &mut std::process::Command,
    stdin: Option<&str>,
) -> anyhow::Result<String> {
    use std::io::Write;
    use std::process::Stdio;
    let name = cmd.get_program().to_string_lossy().to_string();
    let shown = format!(
        "{name} {}",
        cmd.get_args()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    tracing::debug!("{shown}");
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| {
        format!(
            "running {name} (apt-get install {})",
            if name == "nft" {
                "nftables"
            } else {
                "iproute2"
            }
        )
    })?;
    if let Some(input) = stdin {
        tracing::trace!("{name} input:\n{input}");
        child.stdin.take().unwrap().write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!(
            "{shown}: {}",
            err.lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("failed")
                .trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(Mode::parse(None).unwrap(), Mode::Bridge("hx0".into()));
        assert_eq!(Mode::parse(Some("none")).unwrap(), Mode::None);
        assert_eq!(
            Mode::parse(Some("bridge=br0")).unwrap(),
            Mode::Bridge("br0".into())
        );
        assert!(Mode::parse(Some("bridge=a/b")).is_err());
        assert!(Mode::parse(Some("host"))
            .unwrap_err()
            .to_string()
            .contains("own kernel"));
        assert_eq!(
            Mode::parse(Some("front")).unwrap(),
            Mode::Network("front".into())
        );
        assert!(Mode::parse(Some("-x")).is_err());
        assert_eq!(
            Mode::parse(Some("ns:/run/netns/x")).unwrap(),
            Mode::Netns("/run/netns/x".into())
        );
        assert!(Mode::parse(Some("ns:x")).is_err());
    }

    #[test]
    fn names() {
        assert_eq!(ifname_for(&"ab".repeat(32)), "hx-abababababab");
        assert_eq!(mac_for(Ipv4Addr::new(10, 88, 0, 5)), "02:42:0a:58:00:05");
    }
}
