//! The host bridge: made on demand (hx0), forwarding and localnet routing switched on for it.
use super::{run_tool, DEFAULT_BRIDGE, DEFAULT_BRIDGE_ADDR};
use anyhow::{bail, Context};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

pub fn valid_ifname(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 15
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

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
        let (addr, prefix) = DEFAULT_BRIDGE_ADDR;
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
    // Lets a DNATed connection to 127.0.0.1:PORT leave through the bridge (docker does the same).
    sysctl(&format!("net/ipv4/conf/{name}/route_localnet"), "1")?;
    Ok(addr)
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
