//! `hx port`: a container's published ports, in docker's format.
use anyhow::bail;
use hx_engine::container::{self, Status};
use hx_engine::network::Published;
use hx_images::Store;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Container name or id
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::candidates::containers))]
    pub container: String,
    /// Only this container port (PORT or PORT/PROTO)
    pub port: Option<String>,
}

/// `80/tcp -> 0.0.0.0:8080` lines, or with a port given only `0.0.0.0:8080`.
pub fn lines(ports: &[Published], filter: Option<(u16, &str)>) -> Vec<String> {
    let mut ports = ports.to_vec();
    ports.sort_by_key(|p| (p.container_port, p.proto, p.host_ip, p.host_port));
    ports
        .iter()
        .filter(|p| {
            filter.is_none_or(|(port, proto)| p.container_port == port && p.proto.as_str() == proto)
        })
        .map(|p| {
            let host = format!("{}:{}", p.host_ip, p.host_port);
            match filter {
                Some(_) => host,
                None => format!("{}/{} -> {host}", p.container_port, p.proto.as_str()),
            }
        })
        .collect()
}

pub async fn run(g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let c = {
        let _lock = Store::open(&g.root)?.lock()?;
        hx_engine::runtime::reconcile(&g.root)?;
        container::find(&g.root, &args.container)?
    };
    let ports = match (&c.network, c.status) {
        (Some(n), Status::Running) => n.ports.clone(),
        _ => vec![],
    };
    let filter = match &args.port {
        Some(p) => {
            let (port, proto) = p.split_once('/').unwrap_or((p.as_str(), "tcp"));
            let Ok(port) = port.parse::<u16>() else {
                bail!("invalid port {p:?}: PORT or PORT/tcp|udp");
            };
            Some((port, proto.to_ascii_lowercase()))
        }
        None => None,
    };
    let out = lines(&ports, filter.as_ref().map(|(p, pr)| (*p, pr.as_str())));
    if out.is_empty() {
        if let Some(p) = &args.port {
            let p = if p.contains('/') {
                p.clone()
            } else {
                format!("{p}/tcp")
            };
            errln!("hx: no public port '{p}' published for {}", c.name);
            return Ok(1);
        }
    }
    for l in out {
        outln!("{l}");
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hx_engine::network::ports::Proto;

    #[test]
    fn docker_format() {
        let p = |hp, cp, proto| Published {
            host_ip: "0.0.0.0".parse().unwrap(),
            host_port: hp,
            container_port: cp,
            proto,
        };
        let ports = vec![
            p(8443, 443, Proto::Tcp),
            p(8080, 80, Proto::Tcp),
            p(5353, 53, Proto::Udp),
        ];
        assert_eq!(
            lines(&ports, None),
            vec![
                "53/udp -> 0.0.0.0:5353",
                "80/tcp -> 0.0.0.0:8080",
                "443/tcp -> 0.0.0.0:8443"
            ]
        );
        assert_eq!(lines(&ports, Some((80, "tcp"))), vec!["0.0.0.0:8080"]);
        assert!(lines(&ports, Some((80, "udp"))).is_empty());
    }
}
