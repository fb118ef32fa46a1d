//! User networks (`hx network create NAME`, docker's user-defined bridge networks): a record per
//! network under the store, `<root>/networks/<id>/network.json`, so `hx network ls` survives a
//! reboot; the bridge (`hxn-<id11>`) with the network's gateway address and its nftables rules
//! are made by `create` and again, after a reboot, by the first container's `ensure`, and go
//! with `remove`. Each container on the network has an endpoint file (`endpoints/<id>.json`:
//! name, aliases, address) that the network's resolver (resolver.rs) answers from.
use super::{bridge, ipam, nat};
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

const DIR: &str = "networks";
const RECORD: &str = "network.json";
const ENDPOINTS: &str = "endpoints";
/// docker's predefined networks, which `create` refuses as names.
pub const RESERVED: [&str; 4] = ["bridge", "host", "none", "default"];
/// Where default subnets come from, as docker's default pools: 172.18-31.0.0/16, then
/// 192.168.N.0/20.
fn default_pool() -> impl Iterator<Item = Subnet> {
    (18..=31)
        .map(|b| Subnet::new(Ipv4Addr::new(172, b, 0, 0), 16))
        .chain((0..16).map(|n| Subnet::new(Ipv4Addr::new(192, 168, n * 16, 0), 20)))
}

/// An IPv4 subnet: its network address (host bits zero) and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub net: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    fn new(net: Ipv4Addr, prefix: u8) -> Subnet {
        Subnet { net, prefix }
    }

    fn mask(self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix as u32)
        }
    }

    /// `A.B.C.D/N`, strictly: N in 8..=30 (room for a gateway and containers), the address
    /// the network's own (docker's "it should be …" when host bits are set).
    pub fn parse(s: &str) -> anyhow::Result<Subnet> {
        let (ip, len) = s
            .split_once('/')
            .ok_or_else(|| anyhow::anyhow!("invalid subnet {s:?}: use A.B.C.D/N"))?;
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| anyhow::anyhow!("invalid subnet {s:?}: {ip:?} is not an IPv4 address"))?;
        let prefix: u8 = match len.parse() {
            Ok(n) if len.bytes().all(|b| b.is_ascii_digit()) && (8..=30).contains(&n) => n,
            _ => bail!("invalid subnet {s:?}: the prefix length must be 8 to 30"),
        };
        let sub = Subnet::new(ip, prefix);
        let net = Ipv4Addr::from(u32::from(ip) & sub.mask());
        if net != ip {
            bail!("invalid subnet {s}: it should be {net}/{prefix}");
        }
        Ok(sub)
    }

    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.net)
    }

    pub fn overlaps(self, other: Subnet) -> bool {
        let m = self.mask().min(other.mask());
        u32::from(self.net) & m == u32::from(other.net) & m
    }

    fn broadcast(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.net) | !self.mask())
    }

    /// A host address of the subnet (not its network or broadcast address).
    pub fn is_host(self, ip: Ipv4Addr) -> bool {
        self.contains(ip) && ip != self.net && ip != self.broadcast()
    }

    fn first_host(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.net) + 1)
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

/// An IPv6 subnet (`--ipv6`): its network address (host bits zero) and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet6 {
    pub net: Ipv6Addr,
    pub prefix: u8,
}

impl Subnet6 {
    fn mask(self) -> u128 {
        u128::MAX.checked_shl(128 - self.prefix as u32).unwrap_or(0)
    }

    /// `ADDR/N`, strictly: N in 16..=120 (docker takes any; below 16 is not a network's, above
    /// 120 leaves too few addresses), host bits zero (docker's "it should be …"), unicast.
    pub fn parse(s: &str) -> anyhow::Result<Subnet6> {
        let (ip, len) = s
            .split_once('/')
            .ok_or_else(|| anyhow::anyhow!("invalid subnet {s:?}: use ADDR/N"))?;
        let ip: Ipv6Addr = ip
            .parse()
            .map_err(|_| anyhow::anyhow!("invalid subnet {s:?}: {ip:?} is not an IPv6 address"))?;
        let prefix: u8 = match len.parse() {
            Ok(n)
                if len.bytes().all(|b| b.is_ascii_digit())
                    && !len.starts_with('0')
                    && (16..=120).contains(&n) =>
            {
                n
            }
            _ => bail!("invalid subnet {s:?}: the prefix length must be 16 to 120"),
        };
        if ip.is_multicast() || ip.is_loopback() || ip.is_unspecified() {
            bail!("invalid subnet {s}: not a unicast network");
        }
        let sub = Subnet6 { net: ip, prefix };
        let net = Ipv6Addr::from(u128::from(ip) & sub.mask());
        if net != ip {
            bail!("invalid subnet {s}: it should be {net}/{prefix}");
        }
        Ok(sub)
    }

    pub fn contains(self, ip: Ipv6Addr) -> bool {
        u128::from(ip) & self.mask() == u128::from(self.net)
    }

    pub fn overlaps(self, other: Subnet6) -> bool {
        let m = self.mask().min(other.mask());
        u128::from(self.net) & m == u128::from(other.net) & m
    }

    /// A container's or gateway's address: in the subnet, not the subnet-router anycast `::`.
    pub fn is_host(self, ip: Ipv6Addr) -> bool {
        self.contains(ip) && ip != self.net
    }

    fn first_host(self) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.net) + 1)
    }
}

impl std::fmt::Display for Subnet6 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

/// Where `--ipv6` networks without an IPv6 `--subnet` get theirs: /64s of a unique local
/// /48 (RFC 4193: `fd` and 40 bits of a hash of the store's path, so two hosts or stores
/// hardly ever pick the same), in order `…:0::/64`, `…:1::/64`, … As docker's default
/// `fd00::/8`-style pools: never routed beyond the host.
pub fn default_pool6(root: &Path) -> impl Iterator<Item = Subnet6> {
    use sha2::Digest;
    let key = format!("hx-ula:{}", super::store_key(root));
    let h = sha2::Sha256::digest(key.as_bytes());
    let mut prefix = [0u8; 16];
    prefix[0] = 0xfd;
    prefix[1..6].copy_from_slice(&h[..5]);
    let base = u128::from_be_bytes(prefix);
    (0..=u16::MAX as u128).map(move |n| Subnet6 {
        net: Ipv6Addr::from(base | (n << 64)),
        prefix: 64,
    })
}

/// A user network's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserNet {
    pub id: String,
    pub name: String,
    pub created: String,
    pub subnet: String,
    pub gateway: Ipv4Addr,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `--ipv6`: the IPv6 subnet and the bridge's IPv6 address (the containers' v6 gateway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet6: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<Ipv6Addr>,
}

impl UserNet {
    /// The network's IPv6 subnet and gateway, when it was made with `--ipv6`.
    pub fn ipv6(&self) -> anyhow::Result<Option<(Subnet6, Ipv6Addr)>> {
        match (&self.subnet6, self.gateway6) {
            (Some(s), Some(gw)) => Ok(Some((
                Subnet6::parse(s).with_context(|| format!("network {}'s record", self.name))?,
                gw,
            ))),
            (None, None) => Ok(None),
            _ => bail!(
                "network {}'s record: an IPv6 subnet without a gateway or the reverse",
                self.name
            ),
        }
    }

    pub fn bridge(&self) -> String {
        bridge_name(&self.id)
    }

    pub fn subnet(&self) -> anyhow::Result<Subnet> {
        Subnet::parse(&self.subnet).with_context(|| format!("network {}'s record", self.name))
    }

    pub fn prefix(&self) -> u8 {
        self.subnet().map(|s| s.prefix).unwrap_or(16)
    }
}

/// The bridge of network `id`: 15 characters, apart from containers' `hx-<id12>` taps.
pub fn bridge_name(id: &str) -> String {
    format!("hxn-{}", &id[..11])
}

/// One container on a network, as its resolver sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    pub ip: Ipv4Addr,
    /// On a `--ipv6` network (AAAA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<Ipv6Addr>,
}

/// What `create` takes.
#[derive(Debug, Default, Clone)]
pub struct CreateOptions {
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    /// `--ipv6`, and its subnet and gateway (None: from `default_pool6`, its first address).
    pub ipv6: bool,
    pub subnet6: Option<String>,
    pub gateway6: Option<String>,
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
}

fn networks_dir(root: &Path) -> PathBuf {
    root.join(DIR)
}

pub fn dir(root: &Path, id: &str) -> PathBuf {
    networks_dir(root).join(id)
}

/// docker's rule for names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, here at most 64 characters.
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c))
}

/// Every network of the store, by name. Unreadable records are skipped with a warning.
pub fn list(root: &Path) -> Vec<UserNet> {
    let Ok(rd) = std::fs::read_dir(networks_dir(root)) else {
        return vec![];
    };
    let mut out: Vec<UserNet> = rd
        .flatten()
        .filter_map(|e| {
            let id = e.file_name().to_str()?.to_string();
            if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            match read_record(&e.path().join(RECORD)) {
                Ok(n) if n.id == id => Some(n),
                Ok(_) => None,
                // Half made by a `create` that died (`sweep` removes it).
                Err(_) if !e.path().join(RECORD).exists() => None,
                Err(e) => {
                    tracing::warn!("{e:#}");
                    None
                }
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn read_bounded(p: &Path, limit: u64) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let f = std::fs::File::open(p).with_context(|| format!("reading {}", p.display()))?;
    let mut bytes = Vec::new();
    f.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        bail!("{}: larger than {limit} bytes", p.display());
    }
    Ok(bytes)
}

fn read_record(p: &Path) -> anyhow::Result<UserNet> {
    let bytes = read_bounded(p, 1 << 20)?;
    let n: UserNet =
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", p.display()))?;
    if !valid_name(&n.name) {
        bail!("{}: invalid network name", p.display());
    }
    Subnet::parse(&n.subnet)?;
    n.ipv6()?;
    Ok(n)
}

/// The network named `key`, or whose id is `key` or starts with it (docker's lookup).
pub fn find(root: &Path, key: &str) -> anyhow::Result<UserNet> {
    let all = list(root);
    if let Some(n) = all.iter().find(|n| n.name == key || n.id == key) {
        return Ok(n.clone());
    }
    let by_prefix: Vec<&UserNet> = all
        .iter()
        .filter(|n| !key.is_empty() && n.id.starts_with(key))
        .collect();
    match by_prefix.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(crate::HxError::NetworkNotFound(key.to_string()).into()),
        _ => bail!("network {key} is ambiguous ({} matches)", by_prefix.len()),
    }
}

/// Subnets in use on the host that a new network must not overlap: other hx networks, the
/// default bridge's and the host's routes.
fn used_subnets(root: &Path) -> anyhow::Result<Vec<Subnet>> {
    let mut used: Vec<Subnet> = list(root).iter().filter_map(|n| n.subnet().ok()).collect();
    let (gw, prefix) = match bridge::ipv4_of(super::DEFAULT_BRIDGE) {
        Ok(Some(a)) if bridge::exists(super::DEFAULT_BRIDGE) => a,
        _ => super::DEFAULT_BRIDGE_ADDR,
    };
    used.push(Subnet::new(
        Ipv4Addr::from(u32::from(gw) & Subnet::new(gw, prefix).mask()),
        prefix,
    ));
    for (net, len) in bridge::routes()? {
        used.push(Subnet::new(net, len));
    }
    Ok(used)
}

/// Removes what a `create` or `remove` killed halfway left (the caller holds the store lock):
/// directories without a record, `.rm-*` ones.
fn sweep(root: &Path) {
    let Ok(rd) = std::fs::read_dir(networks_dir(root)) else {
        return;
    };
    for e in rd.flatten() {
        let half_removed = e.file_name().to_string_lossy().starts_with(".rm-");
        if half_removed || !e.path().join(RECORD).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Makes network `name` (the caller holds the store lock): its record, its bridge and rules.
pub fn create(root: &Path, name: &str, opts: &CreateOptions) -> anyhow::Result<UserNet> {
    sweep(root);
    if !valid_name(name) {
        bail!(
            "invalid network name {name:?}: use letters, digits and _.- (a letter or digit first)"
        );
    }
    if RESERVED.contains(&name) {
        return Err(crate::HxError::Network(format!(
            "{name} is a pre-defined network and cannot be created"
        ))
        .into());
    }
    if list(root).iter().any(|n| n.name == name) {
        return Err(
            crate::HxError::Network(format!("network with name {name} already exists")).into(),
        );
    }
    if !super::is_root() {
        bail!("hx network create needs root (a network is a host bridge)");
    }
    let subnet = match &opts.subnet {
        Some(s) => {
            let s = Subnet::parse(s)?;
            let others: Vec<Subnet> = list(root).iter().filter_map(|n| n.subnet().ok()).collect();
            if others.iter().any(|o| o.overlaps(s)) {
                return Err(crate::HxError::Network(format!(
                    "invalid pool request: Pool overlaps with other one on this address space ({s})"
                ))
                .into());
            }
            s
        }
        None => {
            let used = used_subnets(root)?;
            default_pool()
                .find(|c| !used.iter().any(|u| u.overlaps(*c)))
                .ok_or_else(|| {
                    anyhow::anyhow!("could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network (use --subnet)")
                })?
        }
    };
    let gateway = match &opts.gateway {
        Some(g) => {
            let ip: Ipv4Addr = g
                .parse()
                .map_err(|_| anyhow::anyhow!("invalid gateway {g:?}: not an IPv4 address"))?;
            if !subnet.is_host(ip) {
                return Err(crate::HxError::Network(format!(
                    "invalid gateway {ip}: not a host address of subnet {subnet}"
                ))
                .into());
            }
            ip
        }
        None => subnet.first_host(),
    };
    let v6 = if opts.ipv6 {
        Some(pick_ipv6(root, opts)?)
    } else {
        None
    };
    let net = UserNet {
        id: crate::container::new_id(),
        name: name.to_string(),
        created: crate::container::now_rfc3339(),
        subnet: subnet.to_string(),
        gateway,
        internal: opts.internal,
        labels: opts.labels.clone(),
        subnet6: v6.map(|(s, _)| s.to_string()),
        gateway6: v6.map(|(_, g)| g),
    };
    let d = dir(root, &net.id);
    std::fs::create_dir_all(d.join(ENDPOINTS))
        .with_context(|| format!("creating {}", d.display()))?;
    let made = hx_images::store::write_atomic(&d.join(RECORD), &serde_json::to_vec_pretty(&net)?)
        .map_err(anyhow::Error::from)
        .and_then(|()| ensure(&net));
    if let Err(e) = made {
        let _ = teardown(&net);
        let _ = std::fs::remove_dir_all(&d);
        return Err(e);
    }
    Ok(net)
}

/// `--ipv6`'s subnet (`--subnet`'s IPv6 one, overlapping no other hx network's, else the
/// first of `default_pool6` that overlaps no hx network and no route of the host) and gateway.
fn pick_ipv6(root: &Path, opts: &CreateOptions) -> anyhow::Result<(Subnet6, Ipv6Addr)> {
    let others: Vec<Subnet6> = list(root)
        .iter()
        .filter_map(|n| n.ipv6().ok().flatten().map(|(s, _)| s))
        .collect();
    let subnet = match &opts.subnet6 {
        Some(s) => {
            let s = Subnet6::parse(s)?;
            if others.iter().any(|o| o.overlaps(s)) {
                return Err(crate::HxError::Network(format!(
                    "invalid pool request: Pool overlaps with other one on this address space ({s})"
                ))
                .into());
            }
            s
        }
        None => {
            let routed: Vec<Subnet6> = bridge::routes6()?
                .into_iter()
                .map(|(net, prefix)| Subnet6 { net, prefix })
                .collect();
            default_pool6(root)
                .find(|c| !others.iter().chain(&routed).any(|u| u.overlaps(*c)))
                .ok_or_else(|| {
                    anyhow::anyhow!("could not find an available IPv6 /64 in the default pool (use --subnet with an IPv6 subnet)")
                })?
        }
    };
    let gateway = match &opts.gateway6 {
        Some(g) => {
            let ip: Ipv6Addr = g
                .parse()
                .map_err(|_| anyhow::anyhow!("invalid gateway {g:?}: not an IPv6 address"))?;
            if !subnet.is_host(ip) {
                return Err(crate::HxError::Network(format!(
                    "invalid gateway {ip}: not a host address of subnet {subnet}"
                ))
                .into());
            }
            ip
        }
        None => subnet.first_host(),
    };
    Ok((subnet, gateway))
}

/// The network's bridge, address and rules, made again where missing (after a reboot).
pub fn ensure(net: &UserNet) -> anyhow::Result<()> {
    let subnet = net.subnet()?;
    let b = net.bridge();
    bridge::ensure_user(&b, net.gateway, subnet.prefix)?;
    nat::ensure_base(&b, net.gateway, subnet.prefix)?;
    nat::ensure_user_net(&b, &subnet.to_string(), net.internal)?;
    if let Some((subnet6, gateway6)) = net.ipv6()? {
        bridge::ensure_user6(&b, gateway6, subnet6.prefix)?;
        nat::ensure_user_net6(&b, &subnet6.to_string(), net.internal)?;
    }
    bridge::allow_localnet(&b)
}

/// Removes the bridge, its rules, its address pool and resolver (not the record).
fn teardown(net: &UserNet) -> anyhow::Result<()> {
    let b = net.bridge();
    nat::remove_bridge(&b)?;
    nat::remove_bridge6(&b)?;
    bridge::delete_link(&b)?;
    if let Ok(pools) = ipam::Pools::host() {
        pools.forget(&b);
    }
    Ok(())
}

/// `hx network rm`: refused while a container runs on it (`active`: their names).
pub fn remove(root: &Path, net: &UserNet, active: &[String]) -> anyhow::Result<()> {
    if !active.is_empty() {
        return Err(crate::HxError::Network(format!(
            "error while removing network: network {} id {} has active endpoints",
            net.name, net.id
        ))
        .into());
    }
    super::resolver::stop(root, net);
    if super::is_root() {
        teardown(net)?;
    }
    let d = dir(root, &net.id);
    // Renamed first: a half-removed network is never listed.
    let gone = networks_dir(root).join(format!(".rm-{}", net.id));
    std::fs::rename(&d, &gone).with_context(|| format!("removing {}", d.display()))?;
    std::fs::remove_dir_all(&gone).with_context(|| format!("removing {}", gone.display()))
}

pub fn endpoints_dir(root: &Path, net_id: &str) -> PathBuf {
    dir(root, net_id).join(ENDPOINTS)
}

pub fn add_endpoint(root: &Path, net_id: &str, ep: &Endpoint) -> anyhow::Result<()> {
    let p = endpoints_dir(root, net_id).join(format!("{}.json", ep.id));
    std::fs::create_dir_all(endpoints_dir(root, net_id))?;
    hx_images::store::write_atomic(&p, &serde_json::to_vec(ep)?).map_err(Into::into)
}

/// A renamed container's endpoint answers for its new name.
pub fn rename_endpoint(root: &Path, net_id: &str, container: &str, name: &str) {
    let mut found: Vec<Endpoint> = endpoints(root, net_id)
        .into_iter()
        .filter(|e| e.id == container)
        .collect();
    if let Some(mut ep) = found.pop() {
        ep.name = name.to_string();
        if let Err(e) = add_endpoint(root, net_id, &ep) {
            tracing::warn!("renaming the endpoint of {container}: {e:#}");
        }
    }
}

pub fn remove_endpoint(root: &Path, net_id: &str, container: &str) {
    let _ = std::fs::remove_file(endpoints_dir(root, net_id).join(format!("{container}.json")));
}

/// The network's endpoints (each file bounded; unreadable ones skipped).
pub fn endpoints(root: &Path, net_id: &str) -> Vec<Endpoint> {
    let Ok(rd) = std::fs::read_dir(endpoints_dir(root, net_id)) else {
        return vec![];
    };
    rd.flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.ends_with(".json")))
        .filter_map(|e| {
            let bytes = read_bounded(&e.path(), 64 << 10).ok()?;
            serde_json::from_slice(&bytes).ok()
        })
        .collect()
}

/// A stable id for a predefined network (`bridge`, `none`) of the store, as docker lists them.
pub fn predefined_id(root: &Path, name: &str) -> String {
    use sha2::Digest;
    let key = format!("hx-predefined:{}:{name}", super::store_key(root));
    hex::encode(sha2::Sha256::digest(key.as_bytes()))
}

/// `--network-alias`: a DNS name (labels of letters, digits, `-` and `_`, dots between).
pub fn valid_alias(a: &str) -> bool {
    !a.is_empty()
        && a.len() <= 253
        && a.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn subnets_are_parsed_strictly() {
        let s = Subnet::parse("172.20.0.0/16").unwrap();
        assert_eq!(s.to_string(), "172.20.0.0/16");
        assert!(s.contains("172.20.9.9".parse().unwrap()));
        assert!(!s.is_host("172.20.255.255".parse().unwrap()));
        assert_eq!(
            Subnet::parse("172.20.0.1/16").unwrap_err().to_string(),
            "invalid subnet 172.20.0.1/16: it should be 172.20.0.0/16"
        );
        for bad in [
            "172.20.0.0",
            "172.20.0.0/7",
            "172.20.0.0/31",
            "x/16",
            "1.2.3.0/+24",
            "1.2.3.0/ 24",
        ] {
            assert!(Subnet::parse(bad).is_err(), "{bad}");
        }
        assert!(Subnet::parse("10.0.0.0/8")
            .unwrap()
            .overlaps(Subnet::parse("10.88.0.0/16").unwrap()));
        assert!(!Subnet::parse("172.18.0.0/16")
            .unwrap()
            .overlaps(Subnet::parse("172.19.0.0/16").unwrap()));
    }

    #[test]
    fn names_and_aliases() {
        assert!(valid_name("front-end_1.a"));
        for bad in ["", "-x", ".x", "a/b", "a b", &"x".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert!(valid_alias("db") && valid_alias("db.internal"));
        assert!(!valid_alias("db..x") && !valid_alias("a b") && !valid_alias(""));
        assert_eq!(bridge_name(&"ab".repeat(32)), "hxn-abababababa");
    }

    #[test]
    fn the_default_pool_skips_what_is_used() {
        let used = [
            Subnet::parse("172.18.0.0/16").unwrap(),
            Subnet::parse("172.16.0.0/12").unwrap(),
        ];
        let first = default_pool().find(|c| !used.iter().any(|u| u.overlaps(*c)));
        assert_eq!(first, Some(Subnet::parse("192.168.0.0/20").unwrap()));
    }

    #[test]
    fn ipv6_subnets_and_the_ula_pool() {
        let s = Subnet6::parse("fd42:1::/64").unwrap();
        assert_eq!(s.to_string(), "fd42:1::/64");
        assert!(s.is_host("fd42:1::50".parse().unwrap()));
        assert!(!s.is_host("fd42:1::".parse().unwrap()));
        assert!(!s.contains("fd42:2::1".parse().unwrap()));
        assert_eq!(s.first_host(), "fd42:1::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(
            Subnet6::parse("fd42:1::1/64").unwrap_err().to_string(),
            "invalid subnet fd42:1::1/64: it should be fd42:1::/64"
        );
        for bad in [
            "fd42:1::",
            "fd42:1::/15",
            "fd42:1::/121",
            "fd42:1::/064",
            "ff02::/64",
            "::/64",
            "10.0.0.0/8",
            "fd42:1::/+64",
        ] {
            assert!(Subnet6::parse(bad).is_err(), "{bad}");
        }
        assert!(Subnet6::parse("fd42::/16")
            .unwrap()
            .overlaps(Subnet6::parse("fd42:1::/64").unwrap()));
        assert!(!Subnet6::parse("fd42::/32")
            .unwrap()
            .overlaps(Subnet6::parse("fd42:1::/64").unwrap()));
        let root = std::path::Path::new("/var/lib/hx");
        let pool: Vec<Subnet6> = default_pool6(root).take(3).collect();
        assert_eq!(pool[0].prefix, 64);
        assert_eq!(pool[0].net.segments()[0] >> 8, 0xfd, "unique local");
        assert_eq!(pool[1].net.segments()[3], 1);
        assert_eq!(
            pool[0].net.segments()[..3],
            pool[2].net.segments()[..3],
            "one /48"
        );
        assert_eq!(
            default_pool6(root).next(),
            default_pool6(root).next(),
            "stable"
        );
    }

    proptest! {
        /// Any IPv6 address and length: accepted exactly when the length is 16..=120, the
        /// host bits are zero and it is unicast; what is accepted prints back as itself.
        #[test]
        fn any_ipv6_subnet(a in any::<u128>(), p in 0u8..140, junk in "[0-9a-f:/.]{0,45}") {
            let ip = Ipv6Addr::from(a);
            let s = format!("{ip}/{p}");
            let aligned = (16..=120).contains(&p) && a & !(u128::MAX << (128 - p as u32)) == 0;
            let unicast = !ip.is_multicast() && !ip.is_loopback() && !ip.is_unspecified();
            match Subnet6::parse(&s) {
                Ok(sub) => {
                    prop_assert!(aligned && unicast);
                    prop_assert_eq!(sub.to_string(), s);
                    prop_assert!(sub.is_host(sub.first_host()));
                }
                Err(_) => prop_assert!(!(aligned && unicast)),
            }
            let _ = Subnet6::parse(&junk);
        }

        /// Any string: parsed or refused without panicking; what is accepted prints back as
        /// itself and contains its own network address.
        #[test]
        fn any_subnet_string(s in "[0-9./a-z ]{0,24}") {
            if let Ok(sub) = Subnet::parse(&s) {
                prop_assert_eq!(sub.to_string(), s);
                prop_assert!(sub.contains(sub.net));
            }
        }

        #[test]
        fn any_address_and_prefix(a in any::<u32>(), p in 0u8..40) {
            let s = format!("{}/{p}", Ipv4Addr::from(a));
            match Subnet::parse(&s) {
                Ok(sub) => {
                    prop_assert!((8..=30).contains(&p));
                    prop_assert_eq!(sub.to_string(), s);
                    prop_assert!(sub.is_host(sub.first_host()));
                }
                Err(_) => {
                    let aligned = (8..=30).contains(&p) && a & !(u32::MAX << (32 - p as u32)) == 0;
                    prop_assert!(!aligned);
                }
            }
        }
    }
}
