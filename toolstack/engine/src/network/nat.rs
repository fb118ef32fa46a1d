//! hx's nftables table (`table ip hx`): outbound NAT for each bridge's subnet, and one DNAT
//! rule per published port, tagged with the store and container (`comment "hx:KEY:ID"`) so
//! that release and reconcile find exactly their own rules. Nothing outside the table is
//! touched; `nft delete table ip hx` removes all of it.
//!
//! Published ports are reached from other hosts (prerouting) and from the host itself (output,
//! including 127.0.0.1: route_localnet on the bridge plus masquerading lets a connection from
//! the loopback address leave through the bridge, as docker does without its userland proxy).
//!
//! route_localnet also makes the kernel accept packets to and from 127.0.0.0/8 arriving on the
//! bridge: a guest routing 127.0.0.1 via its gateway would reach every host service bound to
//! the loopback address (CVE-2020-8558's shape). The `guard` chain drops such packets from
//! every interface but `lo` before conntrack and NAT see them (what kube-proxy's fix does; the
//! kernel treats them as martians anyway wherever route_localnet is off). Nothing legitimate
//! carries them: the host's own connections to 127.0.0.1 never enter through prerouting.
use super::{run_tool, Published, DEFAULT_BRIDGE};
use anyhow::Context;
use std::net::Ipv4Addr;
use std::process::Command;

pub const TABLE: &str = "hx";

const CHAINS: [&str; 6] = [
    "guard",
    "prerouting",
    "output",
    "postrouting",
    "forward",
    "publish",
];

const BASE: &str = "add table ip hx
add chain ip hx guard { type filter hook prerouting priority raw; policy accept; }
add chain ip hx prerouting { type nat hook prerouting priority dstnat; policy accept; }
add chain ip hx output { type nat hook output priority -100; policy accept; }
add chain ip hx postrouting { type nat hook postrouting priority srcnat; policy accept; }
add chain ip hx forward { type filter hook forward priority filter; policy accept; }
add chain ip hx publish
";

fn nft(script: &str) -> anyhow::Result<()> {
    run_tool(Command::new("nft").arg("-f").arg("-"), Some(script)).map(drop)
}

/// The table's rules: (chain, handle, comment).
fn rules() -> anyhow::Result<Vec<(String, u64, String)>> {
    Ok(listing()?.1)
}

/// The table's chain names and rules.
#[allow(clippy::type_complexity)]
fn listing() -> anyhow::Result<(Vec<String>, Vec<(String, u64, String)>)> {
    listing_of("ip")
}

/// `table ip6 hx`'s chain names and rules.
#[allow(clippy::type_complexity)]
fn listing6() -> anyhow::Result<(Vec<String>, Vec<(String, u64, String)>)> {
    listing_of("ip6")
}

#[allow(clippy::type_complexity)]
fn listing_of(family: &str) -> anyhow::Result<(Vec<String>, Vec<(String, u64, String)>)> {
    let out = match run_tool(
        Command::new("nft").args(["-j", "list", "table", family, TABLE]),
        None,
    ) {
        Ok(o) => o,
        Err(e) if e.to_string().contains("No such file or directory") => {
            return Ok((vec![], vec![]))
        }
        Err(e) => return Err(e),
    };
    let v: serde_json::Value = serde_json::from_str(&out).context("parsing `nft -j list table`")?;
    let items = v["nftables"].as_array().cloned().unwrap_or_default();
    let chains = items
        .iter()
        .filter_map(|o| Some(o.get("chain")?["name"].as_str()?.to_string()))
        .collect();
    let rules = items
        .iter()
        .filter_map(|o| {
            let r = o.get("rule")?;
            Some((
                r["chain"].as_str()?.to_string(),
                r["handle"].as_u64()?,
                r["comment"].as_str().unwrap_or("").to_string(),
            ))
        })
        .collect();
    Ok((chains, rules))
}

fn subnet(gateway: Ipv4Addr, prefix: u8) -> String {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix as u32)
    };
    format!("{}/{prefix}", Ipv4Addr::from(u32::from(gateway) & mask))
}

/// The table, its chains, and the bridge's NAT and forwarding rules, each added once.
pub fn ensure_base(bridge: &str, gateway: Ipv4Addr, prefix: u8) -> anyhow::Result<()> {
    let (chains, have) = listing()?;
    let has = |chain: &str, comment: &str| have.iter().any(|(c, _, m)| c == chain && m == comment);
    let mut script = String::from(BASE);
    let guard: Vec<&str> = GUARD.iter().map(|(name, _)| *name).collect();
    let guarded: Vec<&str> = have
        .iter()
        .filter(|(c, _, _)| c == "guard")
        .map(|(_, _, m)| m.as_str())
        .collect();
    if guarded != guard {
        script.push_str("flush chain ip hx guard\n");
        for (name, rule) in GUARD {
            script.push_str(&format!("add rule ip hx guard {rule} comment \"{name}\"\n"));
        }
    }
    for chain in ["prerouting", "output"] {
        if !has(chain, "hx-base") {
            script.push_str(&format!(
                "add rule ip hx {chain} fib daddr type local jump publish comment \"hx-base\"\n"
            ));
        }
    }
    let net = subnet(gateway, prefix);
    let tag = format!("hx-bridge:{bridge}");
    if !has("postrouting", &tag) {
        for rule in [
            // containers reaching out
            format!("ip saddr {net} oifname != \"{bridge}\" masquerade"),
            // the host's own 127.0.0.1:PORT, DNATed to a container
            format!("oifname \"{bridge}\" ip saddr 127.0.0.0/8 masquerade"),
            // a container reaching a published port of the host (hairpin)
            format!("oifname \"{bridge}\" ip saddr {net} ct status dnat masquerade"),
        ] {
            script.push_str(&format!(
                "add rule ip hx postrouting {rule} comment \"{tag}\"\n"
            ));
        }
    }
    if !has("forward", &tag) {
        for rule in [
            format!("iifname \"{bridge}\" accept"),
            format!("oifname \"{bridge}\" ct state established,related accept"),
            format!("oifname \"{bridge}\" ct status dnat accept"),
        ] {
            script.push_str(&format!(
                "add rule ip hx forward {rule} comment \"{tag}\"\n"
            ));
        }
    }
    if script == BASE && CHAINS.iter().all(|c| chains.iter().any(|h| h == c)) {
        return Ok(());
    }
    nft(&script).context("setting up hx's nftables table")
}

/// A user network's isolation (user_net.rs), in a chain of its own that runs before `forward`:
/// nothing is forwarded between its bridge and another of hx's bridges (hx0, other networks'
/// `hxn-…`),
/// either way; an `--internal` network's bridge forwards nowhere else at all. Rules tagged
/// `hx-net:<bridge>`.
pub fn ensure_user_net(bridge: &str, subnet: &str, internal: bool) -> anyhow::Result<()> {
    let (_, have) = listing()?;
    let tag = format!("hx-net:{bridge}");
    if have.iter().any(|(c, _, m)| c == "isolate" && *m == tag) {
        return Ok(());
    }
    let mut script = String::from(
        "add chain ip hx isolate { type filter hook forward priority -1; policy accept; }\n",
    );
    for r in isolation_rules(bridge, internal) {
        script.push_str(&format!("add rule ip hx isolate {r} comment \"{tag}\"\n"));
    }
    tracing::debug!("isolating {bridge} ({subnet})");
    nft(&script).context("isolating the network in hx's nftables table")
}

/// IPv6 on a user network (`--ipv6`): the same isolation in `table ip6 hx`'s `isolate` chain
/// (forward hook, priority filter − 1) as `ensure_user_net`'s for IPv4, and outbound
/// masquerading of the network's IPv6 subnet (unless `--internal`), as docker does with
/// ip6tables on. Rules tagged `hx-net:<bridge>`; `nft delete table ip6 hx` removes them all.
/// Published ports stay IPv4.
pub fn ensure_user_net6(bridge: &str, subnet6: &str, internal: bool) -> anyhow::Result<()> {
    let (_, have) = listing6()?;
    let tag = format!("hx-net:{bridge}");
    let has = |chain: &str| have.iter().any(|(c, _, m)| c == chain && *m == tag);
    let mut script = String::from(
        "add table ip6 hx
         add chain ip6 hx isolate { type filter hook forward priority -1; policy accept; }
         add chain ip6 hx postrouting { type nat hook postrouting priority srcnat; policy accept; }
",
    );
    let mut rules: Vec<(&str, String)> = Vec::new();
    if !has("isolate") {
        rules.extend(
            isolation_rules(bridge, internal)
                .into_iter()
                .map(|r| ("isolate", r)),
        );
    }
    if !internal && !has("postrouting") {
        rules.push((
            "postrouting",
            format!("ip6 saddr {subnet6} oifname != \"{bridge}\" masquerade"),
        ));
    }
    if rules.is_empty() {
        return Ok(());
    }
    for (chain, r) in rules {
        script.push_str(&format!("add rule ip6 hx {chain} {r} comment \"{tag}\"\n"));
    }
    nft(&script).context("isolating the network's IPv6 in hx's nftables table")
}

/// Removes the IPv6 rules made for `bridge` (`ensure_user_net6`).
pub fn remove_bridge6(bridge: &str) -> anyhow::Result<()> {
    delete_tagged("ip6", &[format!("hx-net:{bridge}")]).context("removing the network's IPv6 rules")
}

/// `table ip6 hx`'s rules tagged for `bridge` (tests, diagnostics): (chain, comment).
pub fn bridge_rules6(bridge: &str) -> anyhow::Result<Vec<(String, String)>> {
    tagged_for("ip6", bridge)
}

/// The `isolate` chain's rules for `bridge`, the same in `ip` and `ip6` (interface names only).
fn isolation_rules(bridge: &str, internal: bool) -> Vec<String> {
    if internal {
        vec![
            format!("iifname \"{bridge}\" oifname != \"{bridge}\" drop"),
            format!("oifname \"{bridge}\" iifname != \"{bridge}\" drop"),
        ]
    } else {
        // hx's bridges: hx0 and the user networks' `hxn-…` (uplinks and others' bridges are
        // not hx's business).
        vec![
            format!("iifname \"{bridge}\" oifname != \"{bridge}\" oifname \"hxn-*\" drop"),
            format!("iifname \"{bridge}\" oifname \"{DEFAULT_BRIDGE}\" drop"),
            format!("oifname \"{bridge}\" iifname != \"{bridge}\" iifname \"hxn-*\" drop"),
            format!("oifname \"{bridge}\" iifname \"{DEFAULT_BRIDGE}\" drop"),
        ]
    }
}

/// Removes every rule made for `bridge` (its NAT, forwarding and isolation).
pub fn remove_bridge(bridge: &str) -> anyhow::Result<()> {
    delete_tagged(
        "ip",
        &[format!("hx-bridge:{bridge}"), format!("hx-net:{bridge}")],
    )
    .context("removing the network's rules")
}

/// The rules tagged for `bridge` (tests, diagnostics): (chain, comment).
pub fn bridge_rules(bridge: &str) -> anyhow::Result<Vec<(String, String)>> {
    tagged_for("ip", bridge)
}

/// Deletes the rules of `table FAMILY hx` whose comment is one of `tags`.
fn delete_tagged(family: &str, tags: &[String]) -> anyhow::Result<()> {
    let script: String = listing_of(family)?
        .1
        .into_iter()
        .filter(|(_, _, m)| tags.contains(m))
        .map(|(c, h, _)| format!("delete rule {family} {TABLE} {c} handle {h}\n"))
        .collect();
    if script.is_empty() {
        return Ok(());
    }
    nft(&script)
}

/// `table FAMILY hx`'s rules tagged for `bridge`: (chain, comment).
fn tagged_for(family: &str, bridge: &str) -> anyhow::Result<Vec<(String, String)>> {
    let suffix = format!(":{bridge}");
    Ok(listing_of(family)?
        .1
        .into_iter()
        .filter(|(_, _, m)| m.ends_with(&suffix))
        .map(|(c, _, m)| (c, m))
        .collect())
}

/// The guard chain's rules, in order: (comment, rule).
const GUARD: [(&str, &str); 2] = [
    (
        "hx-guard:to-loopback",
        "iifname != \"lo\" ip daddr 127.0.0.0/8 drop",
    ),
    (
        "hx-guard:from-loopback",
        "iifname != \"lo\" ip saddr 127.0.0.0/8 drop",
    ),
];

fn tag(key: &str, id: &str) -> String {
    format!("hx:{key}:{id}")
}

/// One DNAT rule per published port, all in one transaction.
pub fn add_ports(
    key: &str,
    id: &str,
    _bridge: &str,
    ip: Ipv4Addr,
    ports: &[Published],
) -> anyhow::Result<()> {
    if ports.is_empty() {
        return Ok(());
    }
    let mut script = String::new();
    for p in ports {
        let daddr = if p.host_ip.is_unspecified() {
            String::new()
        } else {
            format!("ip daddr {} ", p.host_ip)
        };
        script.push_str(&format!(
            "add rule ip hx publish {daddr}{proto} dport {hp} dnat to {ip}:{cp} comment \"{tag}\"\n",
            proto = p.proto.as_str(),
            hp = p.host_port,
            cp = p.container_port,
            tag = tag(key, id)
        ));
    }
    nft(&script).context("publishing ports")
}

/// Removes the container's port rules.
pub fn remove_container(key: &str, id: &str) -> anyhow::Result<()> {
    let t = tag(key, id);
    let script: String = rules()?
        .into_iter()
        .filter(|(c, _, m)| c == "publish" && *m == t)
        .map(|(_, h, _)| format!("delete rule ip hx publish handle {h}\n"))
        .collect();
    if script.is_empty() {
        return Ok(());
    }
    nft(&script).context("removing port rules")
}

/// Containers of this store that have port rules: (id, number of rules).
pub fn container_rules(key: &str) -> anyhow::Result<Vec<(String, usize)>> {
    let prefix = format!("hx:{key}:");
    let mut out: Vec<(String, usize)> = Vec::new();
    for (chain, _, m) in rules()? {
        if chain != "publish" {
            continue;
        }
        if let Some(id) = m.strip_prefix(&prefix) {
            match out.iter_mut().find(|(i, _)| i == id) {
                Some((_, n)) => *n += 1,
                None => out.push((id.to_string(), 1)),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn subnet_of_gateway() {
        assert_eq!(
            super::subnet("10.88.0.1".parse().unwrap(), 16),
            "10.88.0.0/16"
        );
        assert_eq!(
            super::subnet("192.168.7.129".parse().unwrap(), 25),
            "192.168.7.128/25"
        );
    }
}
