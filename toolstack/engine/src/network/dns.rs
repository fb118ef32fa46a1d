//! The host's DNS settings, as containers can use them.
use std::net::IpAddr;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Resolv {
    pub nameservers: Vec<String>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

/// Parses resolv.conf; loopback nameservers (a local stub such as systemd-resolved's
/// 127.0.0.53) are dropped: a guest cannot reach the host's loopback.
pub fn parse(text: &str) -> Resolv {
    let mut r = Resolv::default();
    for line in text.lines() {
        let mut w = line.split_whitespace();
        match w.next() {
            Some("nameserver") => {
                if let Some(ns) = w.next() {
                    match ns.parse::<IpAddr>() {
                        Ok(ip) if ip.is_loopback() => {}
                        Ok(IpAddr::V4(ip)) => r.nameservers.push(ip.to_string()),
                        // Containers get IPv4 only.
                        _ => {}
                    }
                }
            }
            Some("search") | Some("domain") => r.search = w.map(String::from).collect(),
            Some("options") => r.options.extend(w.map(String::from)),
            _ => {}
        }
    }
    r
}

/// /etc/resolv.conf, or systemd-resolved's upstream list when the former only names the stub.
pub fn host_resolv() -> Resolv {
    let main = parse(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default());
    if !main.nameservers.is_empty() {
        return main;
    }
    let upstream =
        parse(&std::fs::read_to_string("/run/systemd/resolve/resolv.conf").unwrap_or_default());
    if upstream.nameservers.is_empty() {
        return main;
    }
    upstream
}

/// `--dns IP`: IPv4 addresses (the containers' network is IPv4).
pub fn parse_servers(args: &[String]) -> anyhow::Result<Vec<String>> {
    args.iter()
        .map(|a| match a.parse::<std::net::Ipv4Addr>() {
            Ok(ip) => Ok(ip.to_string()),
            Err(_) => anyhow::bail!("--dns {a:?}: not an IPv4 address"),
        })
        .collect()
}

/// `--add-host NAME:IP` → `/etc/hosts` lines (`IP\tNAME`).
pub fn parse_add_hosts(args: &[String]) -> anyhow::Result<Vec<String>> {
    args.iter()
        .map(|a| {
            let bad = || anyhow::anyhow!("--add-host {a:?}: use HOST:IP");
            let (name, ip) = a.split_once(':').ok_or_else(bad)?;
            let ip: IpAddr = ip.parse().map_err(|_| bad())?;
            let ok = !name.is_empty()
                && name.len() <= 253
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
            if !ok {
                return Err(bad());
            }
            Ok(format!("{ip}\t{name}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_loopback_and_keeps_search_and_options() {
        let r = parse("# x\nnameserver 127.0.0.53\nnameserver 192.168.1.1\nnameserver ::1\nsearch example.com lan\noptions edns0 trust-ad\n");
        assert_eq!(r.nameservers, vec!["192.168.1.1"]);
        assert_eq!(r.search, vec!["example.com", "lan"]);
        assert_eq!(r.options, vec!["edns0", "trust-ad"]);
        assert!(parse("nameserver 127.0.0.1\n").nameservers.is_empty());
    }

    #[test]
    fn dns_and_add_host_flags() {
        assert_eq!(
            parse_servers(&["192.0.2.1".into()]).unwrap(),
            vec!["192.0.2.1"]
        );
        assert!(parse_servers(&["dns.example".into()]).is_err());
        assert_eq!(
            parse_add_hosts(&["db:10.1.2.3".into()]).unwrap(),
            vec!["10.1.2.3\tdb"]
        );
        for bad in ["db", "db:x", ":1.2.3.4", "a b:1.2.3.4"] {
            assert!(parse_add_hosts(&[bad.into()]).is_err(), "{bad}");
        }
    }
}
