//! A VM on an interface that lives in a network namespace someone else made: docker's veth
//! `eth0` in the container's namespace (the OCI runtime), a CNI plugin's veth under CRI.
//!
//! The VM's host end is put inside that namespace and joined to the interface with tc, both
//! ways (Kata's "tcfilter" model): an `ingress` qdisc on each and a `mirred egress redirect`
//! filter matching everything, so every frame arriving on the veth leaves through the VM's
//! interface and every frame the VM sends leaves through the veth. The veth keeps its address
//! (whoever made the namespace still sees it configured, as Kata leaves it) but its own stack
//! never receives a frame: the guest answers for that address, and takes the veth's MAC as its
//! NIC's so that ARP entries and bridge forwarding tables stay right.
//!
//! QEMU: `attach_tap` makes a tap inside the namespace and returns its fd for
//! `-netdev tap,fd=` (the tap vanishes with the last holder of the fd, as `tap::open`'s do).
//! Xen: netback makes the vif in dom0's namespace; `adopt_link` moves it into the namespace and
//! mirrors it the same way. `detach` undoes both; a namespace already gone is fine (docker
//! deletes it when the container ends).
use super::run_tool;
use anyhow::{bail, Context};
use serde::Deserialize;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

/// What the guest needs to take over the interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// The interface's MAC, lower-case `aa:bb:cc:dd:ee:ff`: the guest NIC's.
    pub mac: String,
    pub address: Ipv4Addr,
    pub prefix: u8,
    /// The namespace's default IPv4 gateway, if it has one.
    pub gateway: Option<Ipv4Addr>,
    /// The interface's global IPv6 address and prefix (docker's `--ipv6` networks, CNI's
    /// dual-stack ranges), if it has one.
    pub address6: Option<(Ipv6Addr, u8)>,
    /// The namespace's default IPv6 gateway, if it has one.
    pub gateway6: Option<Ipv6Addr>,
    pub mtu: u32,
}

/// A tap inside the namespace, mirrored to `link`.
#[derive(Debug)]
pub struct NetnsTap {
    pub netns: PathBuf,
    pub link: String,
    pub tap: String,
    /// Open on /dev/net/tun (IFF_VNET_HDR): hand it to QEMU as `-netdev tap,fd=`.
    pub fd: OwnedFd,
}

/// The default name of the VM's interface inside the namespace.
pub const DEFAULT_TAP: &str = "hxtap0";
/// The VM's interfaces inside the namespace are `hxtap0`, `hxtap1`...: one per interface taken.
pub const TAP_PREFIX: &str = "hxtap";

/// Creates tap `tap` inside `netns` (a namespace file: /proc/PID/ns/net, /run/netns/NAME),
/// gives it `link`'s MTU and mirrors the two. Undoes its own work on failure.
pub fn attach_tap(netns: &Path, link: &str, tap: &str) -> anyhow::Result<NetnsTap> {
    check_names(link, tap)?;
    let ns = open_netns(netns)?;
    // The MTU only: the addresses were read when the network was set up (`inspect`).
    let (_, mtu) = link_mac_mtu(netns, link)?;
    let fd = open_tap_in(&ns, tap).with_context(|| format!("in {}", netns.display()))?;
    let mirrored = ip_in(
        netns,
        &["link", "set", "dev", tap, "mtu", &mtu.to_string(), "up"],
    )
    .and_then(|_| mirror(netns, link, tap));
    if let Err(e) = mirrored {
        let _ = unmirror(netns, link, tap);
        return Err(e);
    }
    Ok(NetnsTap {
        netns: netns.to_path_buf(),
        link: link.to_string(),
        tap: tap.to_string(),
        fd,
    })
}

/// Xen: moves `host_link` (a vif netback made in namespace `from`: dom0's own,
/// /proc/1/ns/net, whichever namespace the caller is in) into `netns` as `name`, gives it
/// `link`'s MTU and mirrors the two. On failure the vif is moved back under its own name.
pub fn adopt_link(
    from: &Path,
    netns: &Path,
    link: &str,
    host_link: &str,
    name: &str,
) -> anyhow::Result<LinkInfo> {
    check_names(link, host_link)?;
    check_names(link, name)?;
    open_netns(netns)?;
    let info = inspect(netns, link)?;
    let (target, origin) = (path_str(netns)?, path_str(from)?);
    ip_in(from, &["link", "set", "dev", host_link, "netns", target])
        .with_context(|| format!("moving {host_link} into {}", netns.display()))?;
    let done = (|| {
        if name != host_link {
            ip_in(netns, &["link", "set", "dev", host_link, "name", name])?;
        }
        ip_in(
            netns,
            &[
                "link",
                "set",
                "dev",
                name,
                "mtu",
                &info.mtu.to_string(),
                "up",
            ],
        )?;
        mirror(netns, link, name)
    })();
    if let Err(e) = done {
        let _ = unmirror(netns, link, name);
        // Back under its own name (the rename may not have happened) to where netback made it.
        if let Some(dev) = [name, host_link]
            .into_iter()
            .find(|d| link_exists(netns, d))
        {
            if dev != host_link {
                let _ = ip_in(netns, &["link", "set", "dev", dev, "name", host_link]);
            }
            let _ = ip_in(netns, &["link", "set", "dev", host_link, "netns", origin]);
        }
        return Err(e);
    }
    Ok(info)
}

/// Removes the mirroring and the VM's interface (`tap`) if they are still there. A namespace
/// or interface that is gone already is not an error.
pub fn detach(netns: &Path, link: &str, tap: &str) -> anyhow::Result<()> {
    check_names(link, tap)?;
    if !netns.exists() {
        return Ok(());
    }
    unmirror(netns, link, tap)?;
    if link_exists(netns, tap) {
        match ip_in(netns, &["link", "del", "dev", tap]) {
            Err(_) if !link_exists(netns, tap) => {}
            r => {
                r?;
            }
        }
    }
    Ok(())
}

/// `link`'s MAC and MTU.
fn link_mac_mtu(netns: &Path, link: &str) -> anyhow::Result<(String, u32)> {
    parse_link(&ip_in(netns, &["-j", "link", "show", "dev", link])?)
        .with_context(|| format!("interface {link} in {}", netns.display()))
}

/// `link`'s MAC, IPv4 address, prefix, MTU and the namespace's default gateway, and its
/// global IPv6 address and the IPv6 default gateway where it has them.
pub fn inspect(netns: &Path, link: &str) -> anyhow::Result<LinkInfo> {
    let culprit = || format!("interface {link} in {}", netns.display());
    let (mac, mtu) = link_mac_mtu(netns, link)?;
    let Some((address, prefix)) =
        parse_addr(&ip_in(netns, &["-j", "-4", "addr", "show", "dev", link])?)
            .with_context(culprit)?
    else {
        bail!("{} has no IPv4 address", culprit());
    };
    let gateway = parse_default_gateway(
        &ip_in(netns, &["-j", "-4", "route", "show", "default"])?,
        link,
    )
    .with_context(culprit)?;
    let address6 = parse_addr6(&ip_in(
        netns,
        &["-j", "-6", "addr", "show", "dev", link, "scope", "global"],
    )?)
    .with_context(culprit)?;
    let gateway6 = match address6 {
        None => None,
        Some(_) => parse_default_gateway6(
            &ip_in(netns, &["-j", "-6", "route", "show", "default"])?,
            link,
        )
        .with_context(culprit)?,
    };
    Ok(LinkInfo {
        mac,
        address,
        prefix,
        gateway,
        address6,
        gateway6,
        mtu,
    })
}

/// The namespace's further veths with an IPv4 address (other than `link` and the VM's own
/// `hxtap*`), by name: a container on several networks (docker's eth1..., CNI's). Only veths,
/// what docker, podman and CNI's bridge plugin put there: a bridge, dummy, tunnel or VLAN
/// device of whoever shares the namespace is left alone, as is a veth whose name hx does
/// not take (logged).
pub fn other_links(netns: &Path, link: &str) -> anyhow::Result<Vec<String>> {
    // `-d` for linkinfo's kind; not `-4`: with it, `ip` leaves out the link's details.
    parse_other_links(&ip_in(netns, &["-d", "-j", "addr", "show"])?, link)
        .with_context(|| format!("interfaces of {}", netns.display()))
}

fn parse_other_links(out: &str, link: &str) -> anyhow::Result<Vec<String>> {
    #[derive(Deserialize)]
    struct Kind {
        info_kind: Option<String>,
    }
    #[derive(Deserialize)]
    struct Dev {
        ifname: Option<String>,
        linkinfo: Option<Kind>,
        #[serde(default)]
        addr_info: Vec<IpAddrInfo>,
    }
    let devs: Vec<Dev> = json(out)?;
    let mut names = Vec::new();
    for d in devs {
        let Some(name) = d.ifname else { continue };
        let veth = d.linkinfo.and_then(|k| k.info_kind).as_deref() == Some("veth");
        let has_v4 = d
            .addr_info
            .iter()
            .any(|a| a.family.as_deref() == Some("inet") && a.local.is_some());
        if !veth || !has_v4 || name == link || name.starts_with(TAP_PREFIX) {
            continue;
        }
        if !super::bridge::valid_ifname(&name) {
            tracing::warn!(
                "interface \"{}\": not a name hx takes; the VM does not take it",
                crate::sanitize::line(&name)
            );
            continue;
        }
        names.push(name);
    }
    names.sort();
    names.dedup();
    Ok(names)
}

/// The interface the namespace's IPv4 (or, `v6`, IPv6) default route leaves through.
pub fn default_route_dev(netns: &Path, v6: bool) -> anyhow::Result<Option<String>> {
    let family = if v6 { "-6" } else { "-4" };
    let routes: Vec<IpRoute> = json(&ip_in(netns, &["-j", family, "route", "show", "default"])?)?;
    Ok(routes
        .into_iter()
        .find(|r| r.dst.as_deref() == Some("default"))
        .and_then(|r| r.dev))
}

/// The namespace's identity (its nsfs inode).
pub fn inode(netns: &Path) -> anyhow::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(open_netns(netns)?.metadata()?.ino())
}

fn check_names(link: &str, other: &str) -> anyhow::Result<()> {
    for n in [link, other] {
        if !super::bridge::valid_ifname(n) {
            bail!("{n:?} is not a valid interface name");
        }
    }
    if link == other {
        bail!("the VM's interface cannot be {link} itself");
    }
    Ok(())
}

/// `ip link set ... netns` takes the namespace's path as an argument.
fn path_str(netns: &Path) -> anyhow::Result<&str> {
    netns
        .to_str()
        .with_context(|| format!("network namespace {}: not a UTF-8 path", netns.display()))
}

fn open_netns(netns: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::File::open(netns).with_context(|| format!("network namespace {}", netns.display()))
}

fn ip_in(netns: &Path, args: &[&str]) -> anyhow::Result<String> {
    tool_in(netns, "ip", args)
}

/// `program` run inside `netns` (`ip -n` only takes names under /run/netns): the child joins
/// the namespace between fork and exec, as `nsenter --net=` would with one more exec (a
/// pod's start runs a dozen of these on its critical path).
fn tool_in(netns: &Path, program: &str, args: &[&str]) -> anyhow::Result<String> {
    use std::os::unix::process::CommandExt;
    let ns = open_netns(netns)?;
    let fd = ns.as_raw_fd();
    let mut cmd = Command::new(program);
    cmd.args(args);
    // SAFETY: setns is async-signal-safe; `ns` stays open until the child has run.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = run_tool(&mut cmd, None);
    drop(ns);
    out
}

fn link_exists(netns: &Path, name: &str) -> bool {
    ip_in(netns, &["link", "show", "dev", name]).is_ok()
}

/// Every frame into `a` leaves through `b` and the other way round, except what the VM
/// (`b`) sends to the DNS relay's address (dns_relay.rs): IPv4 to it and ARP asking for it go
/// to the namespace's own stack, where `b` has that address.
fn mirror(netns: &Path, a: &str, b: &str) -> anyhow::Result<()> {
    for (from, to) in [(a, b), (b, a)] {
        tool_in(
            netns,
            "tc",
            &["qdisc", "add", "dev", from, "handle", "ffff:", "ingress"],
        )
        .context("tc (the kernel needs sch_ingress, cls_u32 and act_mirred)")?;
        // The relay answers on the first interface only (the guest's resolv.conf names it).
        if from == b && b == DEFAULT_TAP {
            relay_exceptions(netns, b)?;
        }
        tool_in(
            netns,
            "tc",
            &[
                "filter", "add", "dev", from, "parent", "ffff:", "prio", "10", "protocol", "all",
                "u32", "match", "u8", "0", "0", "action", "mirred", "egress", "redirect", "dev",
                to,
            ],
        )?;
    }
    Ok(())
}

/// The relay's address on `vm_link` and the tc filters (before the mirroring's) that pass the
/// VM's frames for it to the namespace's stack.
fn relay_exceptions(netns: &Path, vm_link: &str) -> anyhow::Result<()> {
    use super::dns_relay::{RELAY_HOST, RELAY_PREFIX};
    ip_in(
        netns,
        &[
            "addr",
            "add",
            &format!("{RELAY_HOST}/{RELAY_PREFIX}"),
            "dev",
            vm_link,
        ],
    )?;
    let host = format!("{RELAY_HOST}/32");
    let arp_target = format!("0x{:08x}", u32::from(RELAY_HOST));
    for filter in [
        &[
            "prio", "1", "protocol", "ip", "u32", "match", "ip", "dst", &host,
        ][..],
        // An ARP request's target protocol address is at offset 24 of the ARP header.
        &[
            "prio",
            "2",
            "protocol",
            "arp",
            "u32",
            "match",
            "u32",
            &arp_target,
            "0xffffffff",
            "at",
            "24",
        ][..],
    ] {
        let mut args = vec!["filter", "add", "dev", vm_link, "parent", "ffff:"];
        args.extend_from_slice(filter);
        // A match without an action ends the classification with TC_ACT_OK: the frame goes
        // up the stack (and no act_gact is needed).
        args.extend_from_slice(&["flowid", "ffff:1"]);
        tool_in(netns, "tc", &args)?;
    }
    Ok(())
}

/// Deleting the ingress qdiscs removes their filters.
fn unmirror(netns: &Path, a: &str, b: &str) -> anyhow::Result<()> {
    for dev in [a, b] {
        if !link_exists(netns, dev) {
            continue;
        }
        let shown = tool_in(netns, "tc", &["qdisc", "show", "dev", dev, "ingress"])?;
        if shown.contains("ingress") {
            tool_in(netns, "tc", &["qdisc", "del", "dev", dev, "ingress"])?;
        }
    }
    Ok(())
}

/// A tap is created in the network namespace of the thread that creates it: a short-lived
/// thread enters `ns` for that (the fd then works from anywhere).
fn open_tap_in(ns: &std::fs::File, name: &str) -> anyhow::Result<OwnedFd> {
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns on this thread only; it ends right after.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error()).context("entering the namespace");
            }
            super::tap::open(name)
        })
        .join()
        .unwrap_or_else(|_| bail!("creating tap {name}: thread panicked"))
    })
}

#[derive(Deserialize)]
struct IpLink {
    #[serde(default)]
    mtu: Option<u32>,
    #[serde(default)]
    address: Option<String>,
}

#[derive(Deserialize)]
struct IpAddrDev {
    #[serde(default)]
    addr_info: Vec<IpAddrInfo>,
}

#[derive(Deserialize)]
struct IpAddrInfo {
    #[serde(default)]
    family: Option<String>,
    local: Option<String>,
    prefixlen: Option<u8>,
}

#[derive(Deserialize)]
struct IpRoute {
    dst: Option<String>,
    gateway: Option<String>,
    dev: Option<String>,
}

/// The whole output of one `ip -j`, bounded (an interface has a few lines).
fn json<T: serde::de::DeserializeOwned>(out: &str) -> anyhow::Result<Vec<T>> {
    if out.len() > 1 << 20 {
        bail!("`ip -j` printed more than 1 MiB");
    }
    if out.trim().is_empty() {
        return Ok(vec![]);
    }
    serde_json::from_str(out).context("parsing `ip -j`")
}

/// `ip -j link show dev X` → (MAC, MTU).
fn parse_link(out: &str) -> anyhow::Result<(String, u32)> {
    let links: Vec<IpLink> = json(out)?;
    let [l] = links.as_slice() else {
        bail!("`ip link` named {} interfaces, not one", links.len());
    };
    let mac = l.address.as_deref().unwrap_or_default();
    if !valid_mac(mac) {
        bail!("no usable Ethernet MAC address");
    }
    match l.mtu {
        Some(mtu) if (68..=65535).contains(&mtu) => Ok((mac.to_ascii_lowercase(), mtu)),
        _ => bail!("no usable MTU"),
    }
}

/// A unicast Ethernet address: six hex pairs, not all zero.
fn valid_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
        && parts.iter().any(|p| *p != "00")
        && u8::from_str_radix(parts[0], 16).is_ok_and(|b| b & 1 == 0)
}

/// `ip -j -4 addr show dev X` → the first IPv4 address and prefix.
fn parse_addr(out: &str) -> anyhow::Result<Option<(Ipv4Addr, u8)>> {
    first_addr(out, "inet", 32)
}

/// `ip -j -6 addr show dev X scope global` → the first IPv6 address and prefix, one an
/// interface of a guest can have (`pv_init::spec::parse_cidr6`: not multicast, loopback...).
fn parse_addr6(out: &str) -> anyhow::Result<Option<(Ipv6Addr, u8)>> {
    let Some((ip, p)) = first_addr::<Ipv6Addr>(out, "inet6", 128)? else {
        return Ok(None);
    };
    match pv_init::spec::parse_cidr6(&format!("{ip}/{p}")) {
        Some(a) => Ok(Some(a)),
        None => bail!("unusable IPv6 address {ip}/{p}"),
    }
}

fn first_addr<T: FromStr>(
    out: &str,
    family: &str,
    max_prefix: u8,
) -> anyhow::Result<Option<(T, u8)>> {
    let devs: Vec<IpAddrDev> = json(out)?;
    let Some(a) = devs
        .iter()
        .flat_map(|d| &d.addr_info)
        .find(|a| a.family.as_deref().unwrap_or(family) == family)
    else {
        return Ok(None);
    };
    let Ok(ip) = a.local.as_deref().unwrap_or_default().parse::<T>() else {
        bail!("invalid {family} address");
    };
    match a.prefixlen {
        Some(p) if (1..=max_prefix).contains(&p) => Ok(Some((ip, p))),
        _ => bail!("invalid prefix length"),
    }
}

/// `ip -j -4 route show default` → the gateway of the default route through `link` (or of
/// the only default route).
fn parse_default_gateway(out: &str, link: &str) -> anyhow::Result<Option<Ipv4Addr>> {
    match default_gateway(out, link)? {
        None => Ok(None),
        Some(IpAddr::V4(g)) => Ok(Some(g)),
        Some(IpAddr::V6(_)) => bail!("invalid default gateway"),
    }
}

/// `ip -j -6 route show default` → as `parse_default_gateway`, a link-local gateway (a
/// router's, as router advertisements install it) included.
fn parse_default_gateway6(out: &str, link: &str) -> anyhow::Result<Option<Ipv6Addr>> {
    match default_gateway(out, link)? {
        None => Ok(None),
        Some(IpAddr::V6(g)) if pv_init::spec::parse_gateway6(&g.to_string()).is_some() => {
            Ok(Some(g))
        }
        Some(_) => bail!("invalid IPv6 default gateway"),
    }
}

fn default_gateway(out: &str, link: &str) -> anyhow::Result<Option<IpAddr>> {
    let routes: Vec<IpRoute> = json(out)?;
    let defaults: Vec<&IpRoute> = routes
        .iter()
        .filter(|r| r.dst.as_deref() == Some("default"))
        .collect();
    let route = defaults
        .iter()
        .find(|r| r.dev.as_deref() == Some(link))
        .or(defaults.first());
    match route.and_then(|r| r.gateway.as_deref()) {
        None => Ok(None),
        Some(g) => Ok(Some(g.parse().context("invalid default gateway")?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_what_ip_prints() {
        let link = r#"[{"ifindex":9,"link_index":10,"ifname":"eth0","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1500,"qdisc":"noqueue","operstate":"UP","linkmode":"DEFAULT","group":"default","link_type":"ether","address":"02:42:AC:11:00:02","broadcast":"ff:ff:ff:ff:ff:ff","link_netnsid":0}]"#;
        assert_eq!(
            parse_link(link).unwrap(),
            ("02:42:ac:11:00:02".to_string(), 1500)
        );
        let addr = r#"[{"ifindex":9,"ifname":"eth0","addr_info":[{"family":"inet","local":"172.17.0.2","prefixlen":16,"broadcast":"172.17.255.255","scope":"global","label":"eth0","valid_life_time":4294967295,"preferred_life_time":4294967295}]}]"#;
        assert_eq!(
            parse_addr(addr).unwrap(),
            Some((Ipv4Addr::new(172, 17, 0, 2), 16))
        );
        assert_eq!(parse_addr("[]").unwrap(), None);
        assert_eq!(parse_addr("").unwrap(), None);
        let routes = r#"[{"dst":"default","gateway":"172.17.0.1","dev":"eth0","flags":[]}]"#;
        assert_eq!(
            parse_default_gateway(routes, "eth0").unwrap(),
            Some(Ipv4Addr::new(172, 17, 0, 1))
        );
        assert_eq!(parse_default_gateway("[]", "eth0").unwrap(), None);
        let addr6 = r#"[{"ifindex":9,"ifname":"eth0","addr_info":[{"family":"inet6","local":"fd00:99::2","prefixlen":64,"scope":"global","nodad":true,"valid_life_time":4294967295,"preferred_life_time":4294967295}]}]"#;
        assert_eq!(
            parse_addr6(addr6).unwrap(),
            Some(("fd00:99::2".parse().unwrap(), 64))
        );
        assert_eq!(parse_addr6("").unwrap(), None);
        let routes6 = r#"[{"dst":"default","gateway":"fd00:99::1","dev":"eth0","protocol":"boot","metric":1024,"flags":[],"pref":"medium"}]"#;
        assert_eq!(
            parse_default_gateway6(routes6, "eth0").unwrap(),
            Some("fd00:99::1".parse().unwrap())
        );
        let ra = r#"[{"dst":"default","gateway":"fe80::1","dev":"eth0"}]"#;
        assert_eq!(
            parse_default_gateway6(ra, "eth0").unwrap(),
            Some("fe80::1".parse().unwrap())
        );
        let two = r#"[{"dst":"default","gateway":"10.0.0.1","dev":"eth1"},{"dst":"default","gateway":"172.17.0.1","dev":"eth0"}]"#;
        assert_eq!(
            parse_default_gateway(two, "eth0").unwrap(),
            Some(Ipv4Addr::new(172, 17, 0, 1))
        );
    }

    #[test]
    fn rejects_what_a_guest_cannot_use() {
        let l = |mac: &str, mtu: u32| format!(r#"[{{"address":"{mac}","mtu":{mtu}}}]"#);
        assert!(parse_link(&l("00:00:00:00:00:00", 1500)).is_err());
        assert!(
            parse_link(&l("01:00:5e:00:00:01", 1500)).is_err(),
            "multicast"
        );
        assert!(parse_link(&l("02:42:ac:11:00", 1500)).is_err());
        assert!(parse_link(&l("02:42:ac:11:00:02", 20)).is_err());
        assert!(parse_link("[]").is_err());
        let two = r#"[{"address":"02:42:ac:11:00:02","mtu":1500},{"address":"02:42:ac:11:00:03","mtu":1500}]"#;
        assert!(parse_link(two).is_err());
        assert!(parse_addr(r#"[{"addr_info":[{"local":"1.2.3.4","prefixlen":33}]}]"#).is_err());
        assert!(parse_addr(r#"[{"addr_info":[{"local":"1.2.3","prefixlen":24}]}]"#).is_err());
        assert!(
            parse_default_gateway(r#"[{"dst":"default","gateway":"fe80::1"}]"#, "eth0").is_err()
        );
        assert!(parse_addr6(
            r#"[{"addr_info":[{"family":"inet6","local":"ff02::1","prefixlen":64}]}]"#
        )
        .is_err());
        assert!(parse_addr6(
            r#"[{"addr_info":[{"family":"inet6","local":"fd00::2","prefixlen":129}]}]"#
        )
        .is_err());
        assert!(parse_addr6(
            r#"[{"addr_info":[{"family":"inet6","local":"10.0.0.1","prefixlen":64}]}]"#
        )
        .is_err());
        assert!(
            parse_default_gateway6(r#"[{"dst":"default","gateway":"10.0.0.1"}]"#, "eth0").is_err()
        );
        assert!(parse_default_gateway6(r#"[{"dst":"default","gateway":"::1"}]"#, "eth0").is_err());
        let veth = r#""linkinfo":{"info_kind":"veth"}"#;
        let all = format!(
            r#"[{{"ifindex":1,"ifname":"lo","link_type":"loopback","addr_info":[{{"family":"inet","local":"127.0.0.1","prefixlen":8}}]}},{{"ifindex":2,"ifname":"tunl0","link_type":"none","linkinfo":{{"info_kind":"ipip"}},"addr_info":[]}},{{"ifindex":9,"ifname":"eth0",{veth},"addr_info":[{{"family":"inet","local":"172.17.0.2","prefixlen":16}}]}},{{"ifindex":12,"ifname":"hxtap0","linkinfo":{{"info_kind":"tun"}},"addr_info":[{{"family":"inet","local":"169.254.53.1","prefixlen":30}}]}},{{"ifindex":11,"ifname":"eth2",{veth},"addr_info":[{{"family":"inet","local":"172.20.0.2","prefixlen":16}}]}},{{"ifindex":10,"ifname":"eth1",{veth},"addr_info":[{{"family":"inet","local":"172.19.0.2","prefixlen":16}}]}},{{"ifindex":13,"ifname":"gretap0","linkinfo":{{"info_kind":"gretap"}},"addr_info":[]}},{{"ifindex":14,"ifname":"br9","linkinfo":{{"info_kind":"bridge"}},"addr_info":[{{"family":"inet","local":"10.9.0.1","prefixlen":24}}]}},{{"ifindex":15,"ifname":"v6only",{veth},"addr_info":[{{"family":"inet6","local":"fd00::2","prefixlen":64}}]}},{{"ifindex":16,"ifname":"a:b",{veth},"addr_info":[{{"family":"inet","local":"10.0.0.1","prefixlen":8}}]}}]"#
        );
        assert_eq!(parse_other_links(&all, "eth0").unwrap(), ["eth1", "eth2"]);
        assert!(parse_other_links("[]", "eth0").unwrap().is_empty());
        assert!(parse_other_links("", "eth0").unwrap().is_empty());
        assert!(parse_other_links("{", "eth0").is_err());
        assert!(check_names("eth0", "eth0").is_err());
        assert!(check_names("eth0", "a/b").is_err());
        assert!(check_names("eth0", "hxtap0").is_ok());
    }

    proptest! {
        /// Whatever `ip` prints, the parsers answer without panicking, and what they accept
        /// is usable.
        #[test]
        fn parsers_are_total(s in ".{0,300}") {
            if let Ok((mac, mtu)) = parse_link(&s) {
                prop_assert!(valid_mac(&mac) && (68..=65535).contains(&mtu));
            }
            if let Ok(Some((_, p))) = parse_addr(&s) {
                prop_assert!((1..=32).contains(&p));
            }
            let _ = parse_default_gateway(&s, "eth0");
            if let Ok(Some((ip, p))) = parse_addr6(&s) {
                let cidr = format!("{ip}/{p}");
                prop_assert!(pv_init::spec::parse_cidr6(&cidr).is_some());
            }
            if let Ok(Some(g)) = parse_default_gateway6(&s, "eth0") {
                let g = g.to_string();
                prop_assert!(pv_init::spec::parse_gateway6(&g).is_some());
            }
        }

        #[test]
        fn parsers_on_json_shapes(
            mac in "[0-9a-fA-F:]{0,20}",
            mtu in any::<u32>(),
            local in "[0-9.]{0,18}",
            local6 in "[0-9a-fA-F:.]{0,40}",
            prefix in any::<u8>(),
        ) {
            let link = format!(r#"[{{"address":"{mac}","mtu":{mtu}}}]"#);
            if let Ok((m, u)) = parse_link(&link) {
                prop_assert!(valid_mac(&m) && u == mtu);
            }
            let addr = format!(r#"[{{"addr_info":[{{"family":"inet","local":"{local}","prefixlen":{prefix}}}]}}]"#);
            if let Ok(Some((ip, p))) = parse_addr(&addr) {
                prop_assert_eq!(ip.to_string(), local);
                prop_assert_eq!(p, prefix);
            }
            let addr6 = format!(r#"[{{"addr_info":[{{"family":"inet6","local":"{local6}","prefixlen":{prefix}}}]}}]"#);
            if let Ok(Some((ip, p))) = parse_addr6(&addr6) {
                prop_assert_eq!(ip, local6.parse::<Ipv6Addr>().unwrap());
                prop_assert!(p == prefix && p <= 128);
            }
        }
    }
}
