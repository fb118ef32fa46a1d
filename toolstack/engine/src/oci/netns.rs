//! The VM's network under an OCI runtime: the keeper lives in the network namespace the spec
//! names (a new one, or a path), the engine's caller (docker's libnetwork-setkey hook, podman's
//! netavark) puts an interface there between `create` and `start`, and the VM's NIC must be
//! connected to that interface.
use super::bundle::NetNs;

/// An interface the caller put in the keeper's network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetnsInterface {
    pub name: String,
}

/// The interfaces of the keeper's (the calling process's) network namespace other than `lo`,
/// from `/proc/self/net/dev` (per network namespace, unlike `/sys/class/net` of a sysfs the
/// namespace did not mount).
pub fn interfaces() -> anyhow::Result<Vec<NetnsInterface>> {
    let text = std::fs::read_to_string("/proc/self/net/dev")?;
    Ok(parse_net_dev(&text))
}

fn parse_net_dev(text: &str) -> Vec<NetnsInterface> {
    text.lines()
        .skip(2)
        .filter_map(|l| l.split_once(':').map(|(name, _)| name.trim().to_string()))
        .filter(|n| !n.is_empty() && n != "lo")
        .map(|name| NetnsInterface { name })
        .collect()
}

/// The engine's `--network` for the VM of a keeper in `ns`, decided at `start` by the keeper
/// itself (after the caller's hooks moved its interface in): a namespace with docker's `eth0`
/// is taken over (`ns:PATH`, network/netns_link.rs: a tap in the namespace mirrored to eth0
/// with tc), one without any interface (`--network none`) gives the VM no NIC.
pub fn guest_network(ns: &NetNs) -> anyhow::Result<Option<String>> {
    let path = match ns {
        // No namespace of its own (docker's --network host): hx cannot give a VM the host's
        // interfaces.
        NetNs::Host => return Ok(Some("none".into())),
        NetNs::Join(p) => p.clone(),
        NetNs::New => format!("/proc/{}/ns/net", std::process::id()).into(),
    };
    let found = interfaces()?;
    if found.iter().any(|i| i.name == crate::network::NETNS_LINK) {
        return Ok(Some(format!("ns:{}", path.display())));
    }
    if !found.is_empty() {
        tracing::warn!(
            "the network namespace has {:?} but no {}: the VM gets no network",
            found.iter().map(|i| &i.name).collect::<Vec<_>>(),
            crate::network::NETNS_LINK
        );
    }
    Ok(Some("none".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_dev_lists_interfaces_but_lo() {
        let text =
            "Inter-|   Receive |  Transmit\n face |bytes packets\n    lo: 0 0 0\n  eth0: 1 2 3\n";
        assert_eq!(
            parse_net_dev(text),
            [NetnsInterface {
                name: "eth0".into()
            }]
        );
    }
}
