//! `hx network create|ls|rm|inspect|connect|disconnect`: docker's user networks
//! (engine network/user_net.rs). The predefined `bridge` (hx0) and `none` are listed and
//! inspected like docker's, and cannot be created or removed.
use super::format::{self, Format};
use super::Fixed;
use hx_engine::container::{Container, Status};
use hx_engine::network::user_net::{self, UserNet};
use hx_images::Store;
use serde_json::json;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Create a network (a bridge with its own subnet) and print its id
    Create(CreateArgs),
    /// List networks
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Remove networks no running container is on
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Show networks' details as JSON
    Inspect(InspectArgs),
    /// Put a stopped or created container on a network (its next start uses it)
    Connect(ConnectArgs),
    /// Take a stopped or created container off a network (it starts without one)
    Disconnect(DisconnectArgs),
    /// Remove every user network no running container is on
    Prune(PruneArgs),
}

#[derive(clap::Args, Debug)]
pub struct PruneArgs {
    /// Accepted for docker's command line (hx does not ask)
    #[arg(short, long)]
    pub force: bool,
}

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// Network name
    pub name: String,
    /// Subnet in CIDR form, one IPv4 and (with --ipv6) one IPv6 (default: the next free /16 of
    /// 172.18-31.0.0, then /20s of 192.168; IPv6: a /64 of a unique local fdXX:XXXX:XXXX::/48)
    #[arg(long, value_name = "CIDR")]
    pub subnet: Vec<String>,
    /// The bridge's address, the containers' gateway, one per subnet's family (default: the
    /// subnet's first address)
    #[arg(long, value_name = "IP")]
    pub gateway: Vec<String>,
    /// IPv6 on the network as well as IPv4: an IPv6 subnet, addresses and names (AAAA)
    #[arg(long)]
    pub ipv6: bool,
    /// Driver: bridge (the only one)
    #[arg(short, long, default_value = "bridge")]
    pub driver: String,
    /// No outside access: no NAT, no forwarding to other networks or the host's uplinks
    #[arg(long)]
    pub internal: bool,
    /// Set metadata on the network: KEY=VALUE
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE")]
    pub label: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct LsArgs {
    /// Only ids
    #[arg(short, long)]
    pub quiet: bool,
    /// A Go template ({{.ID}} {{.Name}} {{.Driver}} {{.Scope}} {{.Internal}} {{.Labels}}), table, json
    #[arg(long, value_name = "TEMPLATE")]
    pub format: Option<String>,
    /// Filter: name=, id=, driver=, label=KEY[=VALUE], type=custom|builtin (docker's)
    #[arg(short = 'f', long = "filter", value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
    /// Full ids
    #[arg(long)]
    pub no_trunc: bool,
}

#[derive(clap::Args, Debug)]
pub struct RmArgs {
    /// Network names or ids
    #[arg(required = true)]
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::candidates::networks))]
    pub networks: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// Network names or ids
    #[arg(required = true)]
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::candidates::networks))]
    pub networks: Vec<String>,
    /// A Go template ({{.IPAM.Config}}, {{json .Containers}}), or json
    #[arg(short, long, value_name = "TEMPLATE")]
    pub format: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct ConnectArgs {
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::candidates::networks))]
    pub network: String,
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::candidates::containers))]
    pub container: String,
    /// The container's address on the network
    #[arg(long)]
    pub ip: Option<std::net::Ipv4Addr>,
    /// The container's IPv6 address on the network (one made with --ipv6)
    #[arg(long)]
    pub ip6: Option<std::net::Ipv6Addr>,
    /// Another name the container has on the network
    #[arg(long = "alias", value_name = "NAME")]
    pub alias: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct DisconnectArgs {
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::candidates::networks))]
    pub network: String,
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::candidates::containers))]
    pub container: String,
    /// Accepted for docker's command line (a stopped container has nothing to force)
    #[arg(short, long)]
    pub force: bool,
}

/// A network as the commands show it: a user network or one of the predefined two.
enum Shown {
    User(UserNet),
    Predefined(&'static str),
}

impl Shown {
    fn name(&self) -> &str {
        match self {
            Shown::User(n) => &n.name,
            Shown::Predefined(n) => n,
        }
    }

    fn id(&self, g: &super::Globals) -> String {
        match self {
            Shown::User(n) => n.id.clone(),
            Shown::Predefined(n) => user_net::predefined_id(&g.root, n),
        }
    }

    fn driver(&self) -> &str {
        match self {
            Shown::Predefined("none") => "null",
            _ => "bridge",
        }
    }

    /// Whether container `c` is on it: running, or being started by an hx.
    fn has(&self, c: &Container) -> bool {
        let active = matches!(
            c.status,
            Status::Running | Status::Starting | Status::Creating
        );
        let Some(n) = c.network.as_ref().filter(|_| active) else {
            return false;
        };
        match self {
            Shown::User(u) => n.network.as_deref() == Some(&u.id),
            Shown::Predefined("none") => n.mode == "none",
            Shown::Predefined(_) => {
                n.network.is_none()
                    && (n.mode == "user"
                        || n.bridge.as_deref() == Some(hx_engine::network::DEFAULT_BRIDGE))
            }
        }
    }
}

fn all(g: &super::Globals) -> Vec<Shown> {
    let mut v = vec![Shown::Predefined("bridge"), Shown::Predefined("none")];
    v.extend(user_net::list(&g.root).into_iter().map(Shown::User));
    v
}

fn find(g: &super::Globals, key: &str) -> anyhow::Result<Shown> {
    for p in ["bridge", "none"] {
        if key == p || (key.len() >= 12 && user_net::predefined_id(&g.root, p).starts_with(key)) {
            return Ok(Shown::Predefined(p));
        }
    }
    Ok(Shown::User(user_net::find(&g.root, key)?))
}

fn reconciled(g: &super::Globals) -> anyhow::Result<Vec<Container>> {
    let _lock = Store::open(&g.root)?.lock()?;
    hx_engine::runtime::reconcile(&g.root)
}

fn subnet_of_default() -> (String, String) {
    let (gw, prefix) = hx_engine::network::bridge::ipv4_of(hx_engine::network::DEFAULT_BRIDGE)
        .ok()
        .flatten()
        .unwrap_or(hx_engine::network::DEFAULT_BRIDGE_ADDR);
    let mask = u32::MAX << (32 - prefix as u32);
    let net = std::net::Ipv4Addr::from(u32::from(gw) & mask);
    (format!("{net}/{prefix}"), gw.to_string())
}

fn details(g: &super::Globals, n: &Shown, containers: &[Container]) -> serde_json::Value {
    let mut attached = serde_json::Map::new();
    for c in containers.iter().filter(|c| n.has(c)) {
        let net = c.network.as_ref().expect("has() checked it");
        attached.insert(
            c.id.clone(),
            json!({
                "Name": c.name,
                "EndpointID": c.id,
                "MacAddress": net.mac.clone().unwrap_or_default(),
                "IPv4Address": net.ip.map(|ip| format!("{ip}/{}", net.prefix_len)).unwrap_or_default(),
                "IPv6Address": net.ip6.map(|ip| format!("{ip}/{}", net.prefix_len6)).unwrap_or_default(),
            }),
        );
    }
    let ipv6 = matches!(n, Shown::User(u) if u.subnet6.is_some());
    let (created, config, internal, labels, bridge) = match n {
        Shown::User(u) => (
            u.created.clone(),
            {
                let mut c = vec![json!({"Subnet": u.subnet, "Gateway": u.gateway.to_string()})];
                if let (Some(s), Some(gw)) = (&u.subnet6, u.gateway6) {
                    c.push(json!({"Subnet": s, "Gateway": gw.to_string()}));
                }
                json!(c)
            },
            u.internal,
            json!(u.labels),
            u.bridge(),
        ),
        Shown::Predefined("bridge") => {
            let (subnet, gw) = subnet_of_default();
            (
                String::new(),
                json!([{"Subnet": subnet, "Gateway": gw}]),
                false,
                json!({}),
                hx_engine::network::DEFAULT_BRIDGE.to_string(),
            )
        }
        Shown::Predefined(_) => (String::new(), json!([]), false, json!({}), String::new()),
    };
    let options = if bridge.is_empty() {
        json!({})
    } else {
        json!({"com.docker.network.bridge.name": bridge})
    };
    json!({
        "Name": n.name(),
        "Id": n.id(g),
        "Created": created,
        "Scope": "local",
        "Driver": n.driver(),
        "EnableIPv6": ipv6,
        "IPAM": {"Driver": "default", "Options": {}, "Config": config},
        "Internal": internal,
        "Attachable": false,
        "Ingress": false,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": false,
        "Containers": attached,
        "Options": options,
        "Labels": labels,
    })
}

const LS_TABLE: &str = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}";
const LS_HEADERS: &[(&str, &str)] = &[
    ("ID", "NETWORK ID"),
    ("Name", "NAME"),
    ("Driver", "DRIVER"),
    ("Scope", "SCOPE"),
    ("IPv6", "IPV6"),
    ("Internal", "INTERNAL"),
    ("CreatedAt", "CREATED AT"),
    ("Labels", "LABELS"),
];

fn ls_row(g: &super::Globals, n: &Shown, trunc: bool) -> gtmpl_ng::Value {
    let mut id = n.id(g);
    if trunc {
        id.truncate(12);
    }
    let (internal, created, labels, ipv6) = match n {
        Shown::User(u) => (
            u.internal,
            u.created.clone(),
            u.labels.clone(),
            u.subnet6.is_some(),
        ),
        Shown::Predefined(_) => (false, String::new(), Default::default(), false),
    };
    let label_text: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format::row(&[
        ("ID", id),
        ("Name", n.name().to_string()),
        ("Driver", n.driver().to_string()),
        ("Scope", "local".into()),
        ("IPv6", ipv6.to_string()),
        ("Internal", internal.to_string()),
        ("CreatedAt", created),
        ("Labels", label_text.join(",")),
    ])
}

pub async fn run(g: &super::Globals, cmd: Command) -> anyhow::Result<i32> {
    match cmd {
        Command::Create(a) => create(g, a),
        Command::Ls(a) => ls(g, a),
        Command::Rm(a) => {
            Ok(super::each_name(&a.networks, |key| std::future::ready(remove(g, key))).await)
        }
        Command::Inspect(a) => inspect(g, a),
        Command::Prune(_) => prune(g),
        Command::Connect(a) => {
            let net = user_net::find(&g.root, &a.network)?;
            for alias in &a.alias {
                if !user_net::valid_alias(alias) {
                    return Err(Fixed::wrap(
                        1,
                        anyhow::anyhow!("--alias {alias:?}: not a valid DNS name"),
                    ));
                }
            }
            if let Some(ip) = a.ip {
                if !net.subnet()?.is_host(ip) || ip == net.gateway {
                    return Err(Fixed::wrap(
                        1,
                        anyhow::anyhow!(
                            "invalid --ip {ip}: not a container address of {}",
                            net.subnet
                        ),
                    ));
                }
            }
            if let Some(ip6) = a.ip6 {
                let usable = net
                    .ipv6()?
                    .is_some_and(|(s, gw)| s.is_host(ip6) && ip6 != gw);
                if !usable {
                    return Err(Fixed::wrap(
                        1,
                        anyhow::anyhow!(
                            "invalid --ip6 {ip6}: not a container address of network {}'s IPv6 subnet",
                            net.name
                        ),
                    ));
                }
            }
            hx_engine::lifecycle::change_network(&g.root, &a.container, |c, req| {
                let now = req.network.clone().unwrap_or_else(|| "bridge".into());
                if on(g, &now).is_some_and(|id| id == net.id) {
                    return Err(hx_engine::HxError::Network(format!(
                        "endpoint with name {} already exists in network {}",
                        c.name, net.name
                    ))
                    .into());
                }
                if let Some(other) = user_net_of(g, &now) {
                    return Err(hx_engine::HxError::Network(format!(
                        "container {} is on network {}: an hx container has one network (hx network disconnect {} {} first)",
                        c.name, other.name, other.name, c.name
                    ))
                    .into());
                }
                req.network = Some(net.name.clone());
                req.ip = a.ip;
                req.ip6 = a.ip6;
                req.network_aliases = a.alias.clone();
                Ok(())
            })?;
            Ok(0)
        }
        Command::Disconnect(a) => {
            let net = user_net::find(&g.root, &a.network)?;
            hx_engine::lifecycle::change_network(&g.root, &a.container, |c, req| {
                let now = req.network.clone().unwrap_or_else(|| "bridge".into());
                if on(g, &now).is_none_or(|id| id != net.id) {
                    return Err(hx_engine::HxError::Network(format!(
                        "container {} is not connected to network {}",
                        c.name, net.name
                    ))
                    .into());
                }
                req.network = Some("none".into());
                req.ip = None;
                req.ip6 = None;
                req.network_aliases.clear();
                Ok(())
            })?;
            Ok(0)
        }
    }
}

/// The user network a `--network` value names, if it names one.
fn user_net_of(g: &super::Globals, mode: &str) -> Option<UserNet> {
    match hx_engine::network::Mode::parse(Some(mode)) {
        Ok(hx_engine::network::Mode::Network(key)) => user_net::find(&g.root, &key).ok(),
        _ => None,
    }
}

fn on(g: &super::Globals, mode: &str) -> Option<String> {
    user_net_of(g, mode).map(|n| n.id)
}

fn create(g: &super::Globals, a: CreateArgs) -> anyhow::Result<i32> {
    let refuse = |msg: String| Err(Fixed::wrap(1, anyhow::anyhow!(msg)));
    if a.driver != "bridge" {
        return refuse(format!(
            "plugin {:?} not found: hx networks use the bridge driver",
            a.driver
        ));
    }
    let is_v6 = |s: &&String| s.contains(':');
    let (subnet6, subnet4): (Vec<&String>, Vec<&String>) = a.subnet.iter().partition(is_v6);
    let (gateway6, gateway4): (Vec<&String>, Vec<&String>) = a.gateway.iter().partition(is_v6);
    if subnet4.len() > 1 || subnet6.len() > 1 {
        return refuse("at most one IPv4 and one IPv6 --subnet per network".into());
    }
    if let (Some(s), false) = (subnet6.first(), a.ipv6) {
        return refuse(format!(
            "--subnet {s} is an IPv6 subnet: add --ipv6 to give the network IPv6"
        ));
    }
    if gateway4.len() > 1 || gateway6.len() > 1 {
        return refuse("at most one IPv4 and one IPv6 --gateway per network".into());
    }
    if !gateway4.is_empty() && subnet4.is_empty() {
        return refuse("--gateway needs --subnet".into());
    }
    if let (Some(g), true) = (gateway6.first(), subnet6.is_empty()) {
        return refuse(format!(
            "--gateway {g} needs an IPv6 --subnet that holds it"
        ));
    }
    let labels = hx_engine::kvfile::labels(&[], &a.label)?;
    let opts = user_net::CreateOptions {
        subnet: subnet4.first().map(|s| s.to_string()),
        gateway: gateway4.first().map(|s| s.to_string()),
        ipv6: a.ipv6,
        subnet6: subnet6.first().map(|s| s.to_string()),
        gateway6: gateway6.first().map(|s| s.to_string()),
        internal: a.internal,
        labels,
    };
    let _lock = Store::open(&g.root)?.lock()?;
    let net = user_net::create(&g.root, &a.name, &opts).map_err(|e| {
        // A malformed subnet or gateway: docker's exit code 1 as for its other refusals.
        let code = super::exit_code_for(&e);
        Fixed::wrap(if code == 125 { 1 } else { code }, e)
    })?;
    outln!("{}", net.id);
    Ok(0)
}

fn ls(g: &super::Globals, a: LsArgs) -> anyhow::Result<i32> {
    use super::filter::{FilterError, Filters};
    let f = Filters::parse(&a.filter, &["name", "id", "driver", "label", "type"]).map_err(|e| {
        let code = match e {
            FilterError::Syntax(_) => 125,
            _ => 1,
        };
        Fixed::wrap(code, e.into())
    })?;
    let custom = a
        .format
        .as_deref()
        .filter(|f| !a.quiet && !f.is_empty() && *f != "table");
    let source = custom.unwrap_or(LS_TABLE);
    let template = Format::parse(source).map_err(|e| Fixed::wrap(1, e.into()))?;
    let list: Vec<Shown> = all(g)
        .into_iter()
        .filter(|n| {
            let (labels, kind) = match n {
                Shown::User(u) => (u.labels.clone(), "custom"),
                Shown::Predefined(_) => (Default::default(), "builtin"),
            };
            let id = n.id(g);
            f.matches("name", n.name())
                && (!f.contains("id") || f.values("id").any(|v| id.starts_with(v)))
                && (!f.contains("driver") || f.values("driver").any(|v| v == n.driver()))
                && (!f.contains("type") || f.values("type").any(|v| v == kind))
                && f.labels_match("label", &labels)
        })
        .collect();
    if a.quiet {
        for n in &list {
            let mut id = n.id(g);
            if !a.no_trunc {
                id.truncate(12);
            }
            outln!("{id}");
        }
        return Ok(0);
    }
    let rows: Vec<_> = list.iter().map(|n| ls_row(g, n, !a.no_trunc)).collect();
    let text = template
        .render_all(source, &rows, LS_HEADERS)
        .map_err(|e| Fixed::wrap(1, e.into()))?;
    hx_engine::output::write_out(format_args!("{text}"));
    Ok(0)
}

fn remove(g: &super::Globals, key: &str) -> anyhow::Result<()> {
    let containers = reconciled(g)?;
    let _lock = Store::open(&g.root)?.lock()?;
    match find(g, key)? {
        Shown::Predefined(p) => Err(hx_engine::HxError::Network(format!(
            "{p} is a pre-defined network and cannot be removed"
        ))
        .into()),
        Shown::User(net) => {
            let shown = Shown::User(net.clone());
            let active: Vec<String> = containers
                .iter()
                .filter(|c| shown.has(c))
                .map(|c| c.name.clone())
                .collect();
            user_net::remove(&g.root, &net, &active)
        }
    }
}

/// docker's output: `Deleted Networks:` and the names, nothing when none went.
fn prune(g: &super::Globals) -> anyhow::Result<i32> {
    let containers = reconciled(g)?;
    let _lock = Store::open(&g.root)?.lock()?;
    let mut deleted = Vec::new();
    for net in user_net::list(&g.root) {
        let shown = Shown::User(net.clone());
        if containers.iter().any(|c| shown.has(c)) {
            continue;
        }
        user_net::remove(&g.root, &net, &[])?;
        deleted.push(net.name);
    }
    if !deleted.is_empty() {
        outln!("Deleted Networks:");
        for n in deleted {
            outln!("{n}");
        }
    }
    Ok(0)
}

fn inspect(g: &super::Globals, a: InspectArgs) -> anyhow::Result<i32> {
    let template = match a.format.as_deref() {
        None | Some("") | Some("json") => None,
        Some(f) => Some((Format::parse(f).map_err(|e| Fixed::wrap(64, e.into()))?, f)),
    };
    let containers = reconciled(g)?;
    let mut out = vec![];
    let mut errors = vec![];
    for key in &a.networks {
        match find(g, key) {
            Ok(n) => out.push(details(g, &n, &containers)),
            Err(e) => errors.push(e),
        }
    }
    match (&template, a.format.as_deref()) {
        (Some((t, source)), _) => {
            let mut text = String::new();
            for v in &out {
                match t.render(
                    &format::from_json(v, &["Labels", "Containers", "Options"]),
                    source,
                ) {
                    Ok(s) => {
                        text.push_str(&s);
                        text.push('\n');
                    }
                    Err(e) => errors.push(e.into()),
                }
            }
            hx_engine::output::write_out(format_args!("{text}"));
        }
        (None, Some("json")) => outln!("{}", serde_json::to_string(&out)?),
        (None, _) => outln!("{}", serde_json::to_string_pretty(&out)?),
    }
    for e in &errors {
        errln!("hx: {}", super::one_line(e));
    }
    Ok(if errors.is_empty() { 0 } else { 1 })
}
