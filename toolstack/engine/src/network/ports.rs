//! Published ports: `-p` parsing, `-P` from the image's ExposedPorts, and host port reservation.
use anyhow::{anyhow, bail};
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }

    fn parse(s: &str) -> anyhow::Result<Proto> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            _ => bail!("protocol {s:?}: tcp or udp"),
        }
    }
}

/// A port as asked for; `host_port` 0 picks a free one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub host_ip: Ipv4Addr,
    pub host_port: u16,
    pub container_port: u16,
    pub proto: Proto,
}

/// A port as published.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Published {
    pub host_ip: Ipv4Addr,
    pub host_port: u16,
    pub container_port: u16,
    pub proto: Proto,
}

impl std::fmt::Display for Published {
    /// docker ps's form: `0.0.0.0:8080->80/tcp`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}->{}/{}",
            self.host_ip,
            self.host_port,
            self.container_port,
            self.proto.as_str()
        )
    }
}

impl Published {
    fn clashes(&self, ip: Ipv4Addr, port: u16, proto: Proto) -> bool {
        self.proto == proto
            && self.host_port == port
            && (self.host_ip == ip || self.host_ip.is_unspecified() || ip.is_unspecified())
    }
}

fn port_range(s: &str, what: &str) -> anyhow::Result<(u16, u16)> {
    let num = |p: &str| -> anyhow::Result<u16> {
        match p.parse::<u16>() {
            Ok(n) if n > 0 => Ok(n),
            _ => bail!("{what} {p:?} is not a port number (1-65535)"),
        }
    };
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (num(a)?, num(b)?);
            if b < a {
                bail!("{what} range {s:?} is reversed");
            }
            Ok((a, b))
        }
        None => num(s).map(|n| (n, n)),
    }
}

/// `[IP:][HOSTPORT:]CONTAINERPORT[/PROTO]`, ports or ranges (`8080-8081:80-81`).
pub fn parse(spec: &str) -> anyhow::Result<Vec<Request>> {
    let bad = |why: String| anyhow!("invalid port mapping -p {spec:?}: {why}");
    let (body, proto) = match spec.rsplit_once('/') {
        Some((b, p)) => (b, Proto::parse(p).map_err(|e| bad(e.to_string()))?),
        None => (spec, Proto::Tcp),
    };
    if body.starts_with('[') {
        return Err(bad(
            "IPv6 host addresses are not supported (ports are published on IPv4)".into(),
        ));
    }
    let parts: Vec<&str> = body.split(':').collect();
    let (ip, host, container) = match parts.as_slice() {
        [c] => ("", "", *c),
        [h, c] => ("", *h, *c),
        [i, h, c] => (*i, *h, *c),
        _ => return Err(bad("use [IP:]HOSTPORT:CONTAINERPORT[/tcp|udp]".into())),
    };
    let host_ip: Ipv4Addr = if ip.is_empty() {
        Ipv4Addr::UNSPECIFIED
    } else {
        ip.parse()
            .map_err(|_| bad(format!("{ip:?} is not an IPv4 address")))?
    };
    let (c0, c1) = port_range(container, "container port").map_err(|e| bad(e.to_string()))?;
    let (h0, h1) = if host.is_empty() {
        (0, 0)
    } else {
        port_range(host, "host port").map_err(|e| bad(e.to_string()))?
    };
    if h0 != 0 && h1 - h0 != c1 - c0 {
        return Err(bad("host and container ranges differ in length".into()));
    }
    Ok((0..=(c1 - c0))
        .map(|i| Request {
            host_ip,
            host_port: if h0 == 0 { 0 } else { h0 + i },
            container_port: c0 + i,
            proto,
        })
        .collect())
}

/// `-P`: every ExposedPorts entry (`80/tcp`, `53/udp`, `8080`) on a free host port.
pub fn exposed(entries: &[String]) -> anyhow::Result<Vec<Request>> {
    let mut out = Vec::new();
    for e in entries {
        let (port, proto) = match e.split_once('/') {
            Some((p, pr)) => (p, Proto::parse(pr)?),
            None => (e.as_str(), Proto::Tcp),
        };
        let (a, b) = port_range(port, "exposed port")?;
        for p in a..=b {
            out.push(Request {
                host_ip: Ipv4Addr::UNSPECIFIED,
                host_port: 0,
                container_port: p,
                proto,
            });
        }
    }
    out.sort_by_key(|r| (r.container_port, r.proto));
    out.dedup();
    Ok(out)
}

/// A host port held for a container: the bound (not listening) socket keeps every other
/// program, and every other container, off the port.
#[derive(Debug)]
pub struct Reserved {
    pub published: Published,
    pub socket: OwnedFd,
}

/// `reuse`: SO_REUSEADDR, as servers set it (TIME_WAIT connections do not block the bind). A
/// held reservation must not set it: a server with SO_REUSEADDR could then bind the port too.
fn bind(ip: Ipv4Addr, port: u16, proto: Proto, reuse: bool) -> std::io::Result<(OwnedFd, u16)> {
    let ty = match proto {
        Proto::Tcp => libc::SOCK_STREAM,
        Proto::Udp => libc::SOCK_DGRAM,
    };
    // SAFETY: plain socket(2); the fd is owned at once.
    let fd = unsafe { libc::socket(libc::AF_INET, ty | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by socket(2).
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    if reuse {
        let one: libc::c_int = 1;
        // SAFETY: a c_int option value of the right size.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_REUSEADDR,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
    }
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: addr is a valid sockaddr_in of `len` bytes.
    if unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_in).cast(),
            len,
        )
    } != 0
    {
        return Err(std::io::Error::last_os_error());
    }
    let mut got: libc::sockaddr_in = addr;
    let mut glen = len;
    // SAFETY: got/glen describe a writable sockaddr_in.
    unsafe {
        libc::getsockname(
            fd.as_raw_fd(),
            (&mut got as *mut libc::sockaddr_in).cast(),
            &mut glen,
        )
    };
    Ok((fd, u16::from_be(got.sin_port)))
}

fn describe(ip: Ipv4Addr, port: u16, proto: Proto) -> String {
    format!("{}/{}", SocketAddrV4::new(ip, port), proto.as_str())
}

/// Takes every requested host port, or none (clear error naming the port and its holder).
pub fn reserve(
    requests: &[Request],
    taken: &[(String, Published)],
) -> anyhow::Result<Vec<Reserved>> {
    reserve_with(requests, taken, false)
}

fn reserve_with(
    requests: &[Request],
    taken: &[(String, Published)],
    reuse: bool,
) -> anyhow::Result<Vec<Reserved>> {
    let mut out: Vec<Reserved> = Vec::new();
    for r in requests {
        if r.host_port != 0 {
            if let Some((who, _)) = taken
                .iter()
                .find(|(_, p)| p.clashes(r.host_ip, r.host_port, r.proto))
            {
                bail!(
                    "port {} is already allocated to container {who}",
                    describe(r.host_ip, r.host_port, r.proto)
                );
            }
            if out
                .iter()
                .any(|o| o.published.clashes(r.host_ip, r.host_port, r.proto))
            {
                bail!(
                    "port {} is published twice",
                    describe(r.host_ip, r.host_port, r.proto)
                );
            }
        }
        let (socket, port) = bind(r.host_ip, r.host_port, r.proto, reuse).map_err(|e| {
            let what = describe(r.host_ip, r.host_port, r.proto);
            match e.raw_os_error() {
                Some(libc::EADDRINUSE) => anyhow!("port {what} is already in use on the host"),
                Some(libc::EADDRNOTAVAIL) => anyhow!(
                    "cannot publish {what}: {} is not an address of this host",
                    r.host_ip
                ),
                Some(libc::EACCES) => anyhow!("cannot publish {what}: ports below 1024 need root"),
                _ => anyhow!("cannot publish {what}: {e}"),
            }
        })?;
        out.push(Reserved {
            published: Published {
                host_ip: r.host_ip,
                host_port: port,
                container_port: r.container_port,
                proto: r.proto,
            },
            socket,
        });
    }
    Ok(out)
}

/// For QEMU user-mode networking, where QEMU binds the ports itself: the same checks, and
/// free ports chosen, but nothing held.
pub fn check_free(
    requests: &[Request],
    taken: &[(String, Published)],
) -> anyhow::Result<Vec<Published>> {
    // QEMU binds with SO_REUSEADDR: probe the same way, or the TIME_WAIT connections of a
    // container just stopped would block its successor.
    Ok(reserve_with(requests, taken, true)?
        .into_iter()
        .map(|r| r.published)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_forms() {
        let r = parse("8080:80").unwrap();
        assert_eq!(
            r,
            vec![Request {
                host_ip: Ipv4Addr::UNSPECIFIED,
                host_port: 8080,
                container_port: 80,
                proto: Proto::Tcp
            }]
        );
        let r = parse("127.0.0.1:53:53/udp").unwrap();
        assert_eq!(
            (r[0].host_ip, r[0].proto),
            (Ipv4Addr::LOCALHOST, Proto::Udp)
        );
        assert_eq!(parse("80").unwrap()[0].host_port, 0);
        assert_eq!(parse("127.0.0.1::80").unwrap()[0].host_port, 0);
        let r = parse("8080-8082:80-82").unwrap();
        assert_eq!(
            r.iter()
                .map(|r| (r.host_port, r.container_port))
                .collect::<Vec<_>>(),
            vec![(8080, 80), (8081, 81), (8082, 82)]
        );
    }

    #[test]
    fn rejects_bad_forms_naming_them() {
        for bad in [
            "",
            "x:80",
            "8080:0",
            "8080:80/sctp",
            "1.2.3:8080:80",
            "8080-8081:80",
            "[::1]:80:80",
            "a:b:c:d",
            "70000:80",
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")), "{bad}: {e}");
        }
    }

    #[test]
    fn exposed_ports() {
        let r = exposed(&["80/tcp".into(), "53/udp".into(), "443".into()]).unwrap();
        assert_eq!(
            r.iter()
                .map(|r| (r.container_port, r.proto))
                .collect::<Vec<_>>(),
            vec![(53, Proto::Udp), (80, Proto::Tcp), (443, Proto::Tcp)]
        );
    }

    #[test]
    fn reservation_blocks_the_port_and_free_ports_are_chosen() {
        let got = reserve(&parse("127.0.0.1::9/tcp").unwrap(), &[]).unwrap();
        let port = got[0].published.host_port;
        assert_ne!(port, 0);
        assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_err());
        let again = reserve(&parse(&format!("127.0.0.1:{port}:80")).unwrap(), &[])
            .unwrap_err()
            .to_string();
        assert!(again.contains("already in use on the host"), "{again}");
        let other = Published {
            host_ip: Ipv4Addr::UNSPECIFIED,
            host_port: 1,
            container_port: 80,
            proto: Proto::Tcp,
        };
        let e = reserve(&parse("127.0.0.1:1:80").unwrap(), &[("web".into(), other)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("allocated to container web"), "{e}");
        drop(got);
        assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok());
    }
}
