//! The host bridge: made on demand (hx0), forwarding and localnet routing switched on for it.
use super::{run_tool, DEFAULT_BRIDGE, DEFAULT_BRIDGE_ADDR};
use anyhow::{bail, Context};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::process::Command;

pub use pv_init::spec::valid_ifname;

pub fn exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

fn is_bridge(name: &str) -> bool {
    Path::new("/sys/class/net")
        .join(name)
        .join("bridge")
        .is_dir()
}

fn ip(args: &[&str]) -> anyhow::Result<String> {
    run_tool(Command::new("ip").args(args), None)
}

/// The bridge's first IPv4 address and prefix length.
pub fn ipv4_of(name: &str) -> anyhow::Result<Option<(Ipv4Addr, u8)>> {
    let out = ip(&["-j", "-4", "addr", "show", "dev", name])?;
    let v: serde_json::Value = serde_json::from_str(&out).context("parsing `ip -j addr`")?;
    let first = v
        .as_array()
        .and_then(|a| a.first())
        .and_then(|i| i["addr_info"].as_array())
        .and_then(|a| a.first())
        .cloned();
    Ok(first.and_then(|a| {
        Some((
            a["local"].as_str()?.parse().ok()?,
            a["prefixlen"].as_u64()? as u8,
        ))
    }))
}

fn sysctl(path: &str, value: &str) -> anyhow::Result<()> {
    let p = format!("/proc/sys/{path}");
    if std::fs::read_to_string(&p).is_ok_and(|v| v.trim() == value) {
        return Ok(());
    }
    std::fs::write(&p, value).with_context(|| format!("setting {p} to {value}"))
}

/// Makes sure the bridge exists, is up and routes: hx0 is created with 10.88.0.1/16; any
/// other bridge must exist already with an IPv4 address (the containers' gateway).
/// Returns (gateway, prefix length).
pub fn ensure(name: &str) -> anyhow::Result<(Ipv4Addr, u8)> {
    if !exists(name) {
        if name != DEFAULT_BRIDGE {
            bail!("bridge {name} does not exist (create it and give it an IPv4 address, or use the default {DEFAULT_BRIDGE})");
        }
        let (addr, prefix) = free_default_addr()?;
        tracing::info!("creating bridge {name} ({addr}/{prefix})");
        match ip(&["link", "add", name, "type", "bridge"]) {
            // Another hx made it meanwhile.
            Err(e) if e.to_string().contains("File exists") => {}
            r => {
                r?;
            }
        }
        let _ = ip(&["addr", "add", &format!("{addr}/{prefix}"), "dev", name]);
    }
    if !is_bridge(name) {
        bail!("{name} is not a bridge");
    }
    ip(&["link", "set", name, "up"])?;
    let Some(addr) = ipv4_of(name)? else {
        bail!("bridge {name} has no IPv4 address (containers need it as their gateway)");
    };
    sysctl("net/ipv4/ip_forward", "1")?;
    Ok(addr)
}

/// Lets a DNATed connection from the host's 127.0.0.1:PORT leave through the bridge and its
/// replies come back (docker does the same without its userland proxy). It also lets the
/// kernel accept packets to and from 127.0.0.0/8 that arrive on the bridge: call it only once
/// `nat::ensure_base` has put the guard dropping those in place.
pub fn allow_localnet(name: &str) -> anyhow::Result<()> {
    sysctl(&format!("net/ipv4/conf/{name}/route_localnet"), "1")
}

/// A user network's bridge (user_net.rs): made with the gateway address when missing (after a
/// reboot too), up, routing. An existing one must be a bridge.
pub fn ensure_user(name: &str, gateway: Ipv4Addr, prefix: u8) -> anyhow::Result<()> {
    if !exists(name) {
        tracing::info!("creating bridge {name} ({gateway}/{prefix})");
        match ip(&["link", "add", name, "type", "bridge"]) {
            Err(e) if e.to_string().contains("File exists") => {}
            r => {
                r?;
            }
        }
    }
    if !is_bridge(name) {
        bail!("{name} is not a bridge");
    }
    if ipv4_of(name)? != Some((gateway, prefix)) {
        match ip(&["addr", "add", &format!("{gateway}/{prefix}"), "dev", name]) {
            Err(e) if e.to_string().contains("File exists") => {}
            r => {
                r?;
            }
        }
    }
    ip(&["link", "set", name, "up"])?;
    sysctl("net/ipv4/ip_forward", "1")
}

/// A `--ipv6` network's bridge (made by `ensure_user`): IPv6 on, its gateway address without
/// duplicate address detection (usable at once; hx's IPAM owns the subnet), and the host
/// forwarding IPv6, as docker does for an IPv6 network (net.ipv6.conf.all.forwarding=1: a
/// host that takes its own IPv6 address from router advertisements then needs accept_ra=2,
/// docs/networking.md).
pub fn ensure_user6(name: &str, gateway: Ipv6Addr, prefix: u8) -> anyhow::Result<()> {
    if !Path::new("/proc/sys/net/ipv6").is_dir() {
        bail!("this host's kernel has IPv6 off (ipv6.disable=1 or no CONFIG_IPV6): --ipv6 networks need it");
    }
    sysctl(&format!("net/ipv6/conf/{name}/disable_ipv6"), "0")?;
    if !ipv6_of(name)?.contains(&(gateway, prefix)) {
        match ip(&[
            "-6",
            "addr",
            "add",
            &format!("{gateway}/{prefix}"),
            "dev",
            name,
            "nodad",
        ]) {
            Err(e) if e.to_string().contains("File exists") => {}
            r => {
                r?;
            }
        }
    }
    sysctl("net/ipv6/conf/all/forwarding", "1")
}

/// The interface's global IPv6 addresses and prefix lengths.
pub fn ipv6_of(name: &str) -> anyhow::Result<Vec<(Ipv6Addr, u8)>> {
    let out = ip(&["-j", "-6", "addr", "show", "dev", name, "scope", "global"])?;
    let v: serde_json::Value = serde_json::from_str(&out).context("parsing `ip -j addr`")?;
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["addr_info"].as_array())
        .flatten()
        .filter_map(|a| {
            Some((
                a["local"].as_str()?.parse().ok()?,
                a["prefixlen"].as_u64()? as u8,
            ))
        })
        .collect())
}

/// The host's IPv6 routes (destination, prefix length): `default`, link-local and multicast
/// left out.
pub fn routes6() -> anyhow::Result<Vec<(Ipv6Addr, u8)>> {
    parse_routes6(&ip(&["-j", "-6", "route", "show"])?)
}

/// `ip -j -6 route`'s destinations: entries without a parsable `dst` (`default`) are skipped.
fn parse_routes6(json: &str) -> anyhow::Result<Vec<(Ipv6Addr, u8)>> {
    let v: serde_json::Value = serde_json::from_str(json).context("parsing `ip -j -6 route`")?;
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let dst = r["dst"].as_str()?;
            let (ip, len) = match dst.split_once('/') {
                Some((ip, len)) if len.bytes().all(|b| b.is_ascii_digit()) => {
                    (ip.parse::<Ipv6Addr>().ok()?, len.parse::<u8>().ok()?)
                }
                Some(_) => return None,
                None => (dst.parse::<Ipv6Addr>().ok()?, 128),
            };
            let special = ip.is_multicast() || (ip.segments()[0] & 0xffc0) == 0xfe80;
            (!special && len <= 128).then_some((ip, len))
        })
        .collect())
}

/// The host's IPv4 routes (destination, prefix length), `default` left out.
pub fn routes() -> anyhow::Result<Vec<(Ipv4Addr, u8)>> {
    let out = ip(&["-j", "-4", "route", "show"])?;
    let v: serde_json::Value = serde_json::from_str(&out).context("parsing `ip -j route`")?;
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| parse_dst(r["dst"].as_str()?))
        .collect())
}

/// hx0's address: 10.88.0.1/16 unless a route of the host already covers part of that range
/// (podman's default network is 10.88.0.0/16 too; a VPN may route 10.0.0.0/8): then the next
/// free one of 10.89.0.1/16 … 10.99.0.1/16.
fn free_default_addr() -> anyhow::Result<(Ipv4Addr, u8)> {
    let routes = routes()?;
    let (first, prefix) = DEFAULT_BRIDGE_ADDR;
    let [a, b, c, d] = first.octets();
    for second in b..=99 {
        let candidate = Ipv4Addr::new(a, second, c, d);
        if !routes
            .iter()
            .any(|&(net, len)| overlaps(candidate, prefix, net, len))
        {
            return Ok((candidate, prefix));
        }
        tracing::info!("{candidate}/{prefix} is routed already; trying the next subnet");
    }
    bail!("no free subnet in 10.88.0.0/16 … 10.99.0.0/16 for {DEFAULT_BRIDGE}: create the bridge with an address yourself")
}

/// `10.88.0.0/16` or a host address; `default` is not a subnet that conflicts.
fn parse_dst(s: &str) -> Option<(Ipv4Addr, u8)> {
    match s.split_once('/') {
        Some((ip, len)) => Some((ip.parse().ok()?, len.parse().ok()?)),
        None => Some((s.parse().ok()?, 32)),
    }
}

fn overlaps(a: Ipv4Addr, la: u8, b: Ipv4Addr, lb: u8) -> bool {
    let l = la.min(lb);
    let mask = if l == 0 {
        0
    } else {
        u32::MAX << (32 - l as u32)
    };
    u32::from(a) & mask == u32::from(b) & mask
}

/// Plugs a host interface (a QEMU tap) into the bridge and brings it up.
pub fn enslave(ifname: &str, bridge: &str) -> anyhow::Result<()> {
    ip(&["link", "set", "dev", ifname, "master", bridge, "up"]).map(drop)
}

/// Removes a host interface if it is still there.
pub fn delete_link(ifname: &str) -> anyhow::Result<()> {
    if !exists(ifname) {
        return Ok(());
    }
    match ip(&["link", "del", "dev", ifname]) {
        Err(_) if !exists(ifname) => Ok(()),
        r => r.map(drop),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnet_overlap() {
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert!(overlaps(ip("10.88.0.1"), 16, ip("10.88.0.0"), 16));
        assert!(overlaps(ip("10.88.0.1"), 16, ip("10.0.0.0"), 8));
        assert!(overlaps(ip("10.88.0.1"), 16, ip("10.88.7.0"), 24));
        assert!(!overlaps(ip("10.88.0.1"), 16, ip("10.89.0.0"), 16));
        assert!(!overlaps(ip("10.88.0.1"), 16, ip("192.168.1.0"), 24));
        assert_eq!(parse_dst("default"), None);
        assert!(valid_ifname("hx0") && valid_ifname("br-1.2"));
        assert!(!valid_ifname("..") && !valid_ifname(".") && !valid_ifname("a/b"));
        assert_eq!(parse_dst("10.1.2.3"), Some((ip("10.1.2.3"), 32)));
    }

    #[test]
    fn ipv6_routes_as_ip_prints_them() {
        let json = r#"[{"dst":"fd42:1::/64","dev":"hxn-1"},{"dst":"fe80::/64","dev":"eth0"},
            {"dst":"default","gateway":"fd00::1"},{"dst":"2001:db8::5","dev":"eth0"},
            {"dst":"ff00::/8"},{"dst":"fd00::/+8"},{"dst":"fd00::/200"},{"nodst":1}]"#;
        let v6 = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        assert_eq!(
            parse_routes6(json).unwrap(),
            vec![(v6("fd42:1::"), 64), (v6("2001:db8::5"), 128)]
        );
        assert!(parse_routes6("not json").is_err());
        assert_eq!(parse_routes6("{}").unwrap(), vec![]);
    }

    proptest::proptest! {
        /// Whatever `ip` prints: parsed or refused without panicking; every route kept has a
        /// length of at most 128.
        #[test]
        fn any_route_listing(dst in "[0-9a-f:/+. ]{0,48}", junk in ".{0,64}") {
            let json = serde_json::json!([{"dst": dst}]).to_string();
            for (_, len) in parse_routes6(&json).unwrap() {
                proptest::prop_assert!(len <= 128);
            }
            let _ = parse_routes6(&junk);
        }
    }
}
