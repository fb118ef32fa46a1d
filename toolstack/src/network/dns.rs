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
}
