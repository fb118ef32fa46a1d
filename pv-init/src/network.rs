//! Network interfaces: loopback always; eth0 from the spec (address, netmask, default route).
//! Plain ioctls: no netlink library, and the kernel needs nothing beyond CONFIG_INET.
use crate::InitError;
use pv_init::spec::Network;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// `struct rtentry` (linux/route.h, x86_64); glibc's libc crate does not export it.
#[repr(C)]
struct RtEntry {
    rt_pad1: libc::c_ulong,
    rt_dst: libc::sockaddr,
    rt_gateway: libc::sockaddr,
    rt_genmask: libc::sockaddr,
    rt_flags: libc::c_ushort,
    rt_pad2: libc::c_short,
    rt_pad3: libc::c_ulong,
    rt_pad4: *mut libc::c_void,
    rt_metric: libc::c_short,
    rt_dev: *mut libc::c_char,
    rt_mtu: libc::c_ulong,
    rt_window: libc::c_ulong,
    rt_irtt: libc::c_ushort,
}

/// `struct in6_rtmsg` (linux/ipv6_route.h); the libc crate's has private fields.
#[repr(C)]
struct In6RtMsg {
    dst: libc::in6_addr,
    src: libc::in6_addr,
    gateway: libc::in6_addr,
    rt_type: u32,
    dst_len: u16,
    src_len: u16,
    metric: u32,
    info: libc::c_ulong,
    flags: u32,
    ifindex: libc::c_int,
}

fn in6(ip: Ipv6Addr) -> libc::in6_addr {
    libc::in6_addr {
        s6_addr: ip.octets(),
    }
}

fn sockaddr(ip: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size (16 bytes) on Linux.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

struct Sock(OwnedFd);

impl Sock {
    fn new() -> Result<Self, InitError> {
        Self::of(libc::AF_INET)
    }

    /// The address family's ioctls need a socket of that family (AF_INET6: in6_ifreq).
    fn of(family: libc::c_int) -> Result<Self, InitError> {
        // SAFETY: plain socket(2) call.
        let fd = unsafe { libc::socket(family, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(InitError::setup(format!(
                "network: socket: {}",
                std::io::Error::last_os_error()
            )));
        }
        // SAFETY: fd was just returned by socket(2).
        Ok(Sock(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn ifreq(name: &str) -> libc::ifreq {
        // SAFETY: ifreq is plain data; all-zero is a valid value.
        let mut r: libc::ifreq = unsafe { std::mem::zeroed() };
        for (d, s) in r
            .ifr_name
            .iter_mut()
            .zip(name.bytes().take(libc::IFNAMSIZ - 1))
        {
            *d = s as libc::c_char;
        }
        r
    }

    fn ioctl<T>(&self, req: libc::c_ulong, arg: &mut T, what: &str) -> Result<(), InitError> {
        // SAFETY: `arg` is the structure this request expects (ifreq or rtentry).
        if unsafe { libc::ioctl(self.0.as_raw_fd(), req as _, arg as *mut T) } < 0 {
            return Err(InitError::setup(format!(
                "network: {what}: {}",
                std::io::Error::last_os_error()
            )));
        }
        Ok(())
    }

    fn up(&self, name: &str) -> Result<(), InitError> {
        let mut r = Self::ifreq(name);
        self.ioctl(libc::SIOCGIFFLAGS, &mut r, &format!("{name} flags"))?;
        // SAFETY: SIOCGIFFLAGS filled the flags member.
        unsafe { r.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
        self.ioctl(libc::SIOCSIFFLAGS, &mut r, &format!("{name} up"))
    }

    /// Gives `name` the MAC `want` unless it has it already (a cold boot: the host made the
    /// device with it). A warm-start guest's NIC kept its template's MAC; virtio-net passes
    /// the new one to QEMU's receive filter over its control queue.
    fn ensure_mac(&self, name: &str, want: [u8; 6]) -> Result<(), InitError> {
        let mut r = Self::ifreq(name);
        self.ioctl(libc::SIOCGIFHWADDR, &mut r, &format!("{name} MAC"))?;
        // SAFETY: SIOCGIFHWADDR filled the hwaddr member.
        let have = unsafe { r.ifr_ifru.ifru_hwaddr };
        if have.sa_data[..6].iter().map(|&b| b as u8).eq(want) {
            return Ok(());
        }
        let mut addr = have;
        for (d, s) in addr.sa_data.iter_mut().zip(want) {
            *d = s as libc::c_char;
        }
        let mut r = Self::ifreq(name);
        r.ifr_ifru.ifru_hwaddr = addr;
        self.ioctl(libc::SIOCSIFHWADDR, &mut r, &format!("{name} MAC"))
    }

    fn set_addr(&self, name: &str, ip: Ipv4Addr, prefix: u8) -> Result<(), InitError> {
        let mut r = Self::ifreq(name);
        r.ifr_ifru.ifru_addr = sockaddr(ip);
        self.ioctl(libc::SIOCSIFADDR, &mut r, &format!("{name} address {ip}"))?;
        let mask = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix as u32)
        };
        let mut r = Self::ifreq(name);
        r.ifr_ifru.ifru_netmask = sockaddr(Ipv4Addr::from(mask));
        self.ioctl(
            libc::SIOCSIFNETMASK,
            &mut r,
            &format!("{name} netmask /{prefix}"),
        )
    }

    /// Renames interface `from` (down: a NIC nobody brought up yet) to `to`.
    fn rename(&self, from: &str, to: &str) -> Result<(), InitError> {
        let mut r = Self::ifreq(from);
        let new = Self::ifreq(to);
        r.ifr_ifru.ifru_newname = new.ifr_name;
        self.ioctl(
            libc::SIOCSIFNAME,
            &mut r,
            &format!("renaming {from} to {to}"),
        )
    }

    fn set_mtu(&self, name: &str, mtu: u32) -> Result<(), InitError> {
        let mut r = Self::ifreq(name);
        r.ifr_ifru.ifru_mtu = mtu as libc::c_int;
        self.ioctl(libc::SIOCSIFMTU, &mut r, &format!("{name} mtu {mtu}"))
    }

    fn index(&self, name: &str) -> Result<libc::c_int, InitError> {
        let mut r = Self::ifreq(name);
        self.ioctl(libc::SIOCGIFINDEX, &mut r, &format!("{name} index"))?;
        // SAFETY: SIOCGIFINDEX filled the ifindex member.
        Ok(unsafe { r.ifr_ifru.ifru_ifindex })
    }

    /// On an AF_INET6 socket: adds `ip/prefix` to interface `index`.
    fn add_addr6(&self, index: libc::c_int, ip: Ipv6Addr, prefix: u8) -> Result<(), InitError> {
        let mut r = libc::in6_ifreq {
            ifr6_addr: in6(ip),
            ifr6_prefixlen: prefix as u32,
            ifr6_ifindex: index,
        };
        self.ioctl(libc::SIOCSIFADDR, &mut r, &format!("address {ip}/{prefix}"))
    }

    /// On an AF_INET6 socket: the default route via `gw` out of interface `index`.
    fn default_route6(&self, index: libc::c_int, gw: Ipv6Addr) -> Result<(), InitError> {
        let mut rt = In6RtMsg {
            dst: in6(Ipv6Addr::UNSPECIFIED),
            src: in6(Ipv6Addr::UNSPECIFIED),
            gateway: in6(gw),
            rt_type: 0,
            dst_len: 0,
            src_len: 0,
            metric: 1,
            info: 0,
            flags: (libc::RTF_UP | libc::RTF_GATEWAY) as u32,
            ifindex: index,
        };
        self.ioctl(libc::SIOCADDRT, &mut rt, &format!("default route via {gw}"))
    }

    fn default_route(&self, gw: Ipv4Addr) -> Result<(), InitError> {
        let mut rt = RtEntry {
            rt_pad1: 0,
            rt_dst: sockaddr(Ipv4Addr::UNSPECIFIED),
            rt_gateway: sockaddr(gw),
            rt_genmask: sockaddr(Ipv4Addr::UNSPECIFIED),
            rt_flags: libc::RTF_UP | libc::RTF_GATEWAY,
            rt_pad2: 0,
            rt_pad3: 0,
            rt_pad4: std::ptr::null_mut(),
            rt_metric: 0,
            rt_dev: std::ptr::null_mut(),
            rt_mtu: 0,
            rt_window: 0,
            rt_irtt: 0,
        };
        self.ioctl(libc::SIOCADDRT, &mut rt, &format!("default route via {gw}"))
    }
}

/// `10.88.0.5/16` → address and prefix length.
pub fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (ip, len) = s.split_once('/')?;
    let len: u8 = len.parse().ok()?;
    (len <= 32).then_some((ip.parse().ok()?, len))
}

/// Brings loopback up (the kernel gives it 127.0.0.1) and configures the spec's interface.
pub fn configure(net: Option<&Network>) -> Result<(), InitError> {
    let sock = Sock::new()?;
    sock.up("lo")?;
    // Docker's default for a container with a network namespace of its own (moby 20.10+): any
    // user may bind ports below 1024, which images running as a non-root USER rely on (the
    // official haproxy image binds :80 as haproxy). The guest is the container's namespace.
    // A kernel without the sysctl (before 4.11) keeps its default: nothing to fail on.
    let _ = std::fs::write("/proc/sys/net/ipv4/ip_unprivileged_port_start", "0");
    // Docker's other namespace default: any group may open ICMP echo sockets, so `ping` works
    // for a non-root USER without setuid or capabilities. `--sysctl` applies after this.
    let _ = std::fs::write("/proc/sys/net/ipv4/ping_group_range", "0 2147483647");
    let Some(net) = net else { return Ok(()) };
    let (ip, prefix) = parse_cidr(&net.address)
        .ok_or_else(|| InitError::setup(format!("network: bad address {:?}", net.address)))?;
    if net.extra.is_empty() {
        wait_for(|| {
            std::path::Path::new(&format!("/sys/class/net/{}", net.interface))
                .exists()
                .then_some(())
        })
        .map_err(|have| {
            InitError::setup(format!(
                "network: interface {} not found (have {have:?})",
                net.interface
            ))
        })?;
        if let Some(mac) = &net.mac {
            sock.ensure_mac(&net.interface, mac_of(mac)?)?;
        }
    } else {
        name_by_mac(&sock, net)?;
    }
    sock.set_addr(&net.interface, ip, prefix)?;
    set_mtu(&sock, &net.interface, net.mtu)?;
    sock.up(&net.interface)?;
    if let Some(relay) = &net.dns_relay {
        // A second address (an alias: ioctls know no other kind) on the relay's subnet: its
        // connected route makes it the source of the guest's queries to the relay.
        let (rip, rprefix) = parse_cidr(&relay.address).ok_or_else(|| {
            InitError::setup(format!("network: bad relay address {:?}", relay.address))
        })?;
        let alias = format!("{}:1", net.interface);
        if alias.len() >= libc::IFNAMSIZ {
            return Err(InitError::setup(format!("network: {alias}: name too long")));
        }
        sock.set_addr(&alias, rip, rprefix)?;
        sock.up(&alias)?;
    }
    for x in &net.extra {
        let (ip, prefix) = parse_cidr(&x.address).ok_or_else(|| {
            InitError::setup(format!(
                "network: bad address {:?} for {}",
                x.address, x.interface
            ))
        })?;
        sock.set_addr(&x.interface, ip, prefix)?;
        set_mtu(&sock, &x.interface, x.mtu)?;
        sock.up(&x.interface)?;
    }
    // Default routes once every interface has its address: the gateway may be on any.
    for gw in std::iter::once(&net.gateway)
        .chain(net.extra.iter().map(|x| &x.gateway))
        .flatten()
    {
        let gw: Ipv4Addr = gw
            .parse()
            .map_err(|_| InitError::setup(format!("network: bad gateway {gw:?}")))?;
        sock.default_route(gw)?;
    }
    if let Some(a6) = &net.address6 {
        configure6(&net.interface, a6, net.gateway6.as_deref(), &sock)?;
    }
    for x in &net.extra {
        if let Some(a6) = &x.address6 {
            configure6(&x.interface, a6, x.gateway6.as_deref(), &sock)?;
        }
    }
    Ok(())
}

/// A NIC hot-plugged into the running guest (`Control::NetUp`): the one with `mac` (waited
/// for: netfront probes it when the host connects it) gets the name `name`, unless another
/// interface has that name already, then `ip/prefix`, and comes up.
pub fn hotplugged(name: &str, mac: [u8; 6], ip: Ipv4Addr, prefix: u8) -> Result<(), InitError> {
    let now = wait_for(|| current_names(&[mac]))
        .map_err(|have| {
            InitError::setup(format!(
                "network: no NIC with the MAC for {name} appeared (have {have:?})"
            ))
        })?
        .remove(0);
    let sock = Sock::new()?;
    if now != name {
        if std::path::Path::new(&format!("/sys/class/net/{name}")).exists() {
            return Err(InitError::setup(format!(
                "network: {name} exists already (the new NIC is {now})"
            )));
        }
        sock.rename(&now, name)?;
    }
    sock.set_addr(name, ip, prefix)?;
    sock.up(name)
}

fn mac_of(mac: &str) -> Result<[u8; 6], InitError> {
    pv_init::spec::parse_mac(mac)
        .ok_or_else(|| InitError::setup(format!("network: bad MAC {mac:?}")))
}

fn set_mtu(sock: &Sock, ifname: &str, mtu: Option<u32>) -> Result<(), InitError> {
    match mtu {
        None => Ok(()),
        Some(mtu) if (68..=65535).contains(&mtu) => sock.set_mtu(ifname, mtu),
        Some(mtu) => Err(InitError::setup(format!("network: bad mtu {mtu}"))),
    }
}

/// The interfaces the kernel has, for an error message.
fn interface_names() -> Vec<String> {
    std::fs::read_dir("/sys/class/net")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Polls `found` until it gives a value. Xen's netfront registers a device when xenbus
/// probes it, which may be after init starts. Err: the interfaces there were at the deadline.
fn wait_for<T>(mut found: impl FnMut() -> Option<T>) -> Result<T, Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = found() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(interface_names());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The interfaces' names by MAC (`/sys/class/net/*/address`), once every MAC in `macs`
/// is there.
fn current_names(macs: &[[u8; 6]]) -> Option<Vec<String>> {
    let have: Vec<(String, [u8; 6])> = interface_names()
        .into_iter()
        .filter_map(|n| {
            let a = std::fs::read_to_string(format!("/sys/class/net/{n}/address")).ok()?;
            Some((n, pv_init::spec::parse_mac(a.trim())?))
        })
        .collect();
    macs.iter()
        .map(|m| have.iter().find(|(_, a)| a == m).map(|(n, _)| n.clone()))
        .collect()
}

/// A guest on several networks: each NIC found by its MAC gets the name the spec gives it
/// (through temporary names, as two may swap).
fn name_by_mac(sock: &Sock, net: &Network) -> Result<(), InitError> {
    if net.extra.len() > pv_init::spec::MAX_EXTRA_INTERFACES {
        return Err(InitError::setup(format!(
            "network: {} interfaces (at most {})",
            net.extra.len() + 1,
            pv_init::spec::MAX_EXTRA_INTERFACES + 1
        )));
    }
    let primary = net.mac.as_deref().ok_or_else(|| {
        InitError::setup("network: several interfaces but the first has no MAC".to_string())
    })?;
    let mut wanted = vec![(net.interface.as_str(), mac_of(primary)?)];
    for x in &net.extra {
        wanted.push((x.interface.as_str(), mac_of(&x.mac)?));
    }
    let plan = renames(&wanted, |macs| {
        wait_for(|| current_names(macs)).map_err(|have| {
            InitError::setup(format!(
                "network: not every NIC of {:?} appeared (have {have:?})",
                wanted.iter().map(|w| w.0).collect::<Vec<_>>()
            ))
        })
    })?;
    for (from, to) in plan {
        sock.rename(&from, &to)?;
    }
    Ok(())
}

/// The renames that give each (name, MAC) of `wanted` its name, `current` telling the names
/// the MACs have now: first every misnamed one to a temporary name, then to its own.
fn renames(
    wanted: &[(&str, [u8; 6])],
    current: impl FnOnce(&[[u8; 6]]) -> Result<Vec<String>, InitError>,
) -> Result<Vec<(String, String)>, InitError> {
    for (i, (name, mac)) in wanted.iter().enumerate() {
        if !pv_init::spec::valid_ifname(name) {
            return Err(InitError::setup(format!(
                "network: {name:?} is not an interface name"
            )));
        }
        if wanted[..i].iter().any(|(n, m)| n == name || m == mac) {
            return Err(InitError::setup(format!(
                "network: interface {name} or its MAC given twice"
            )));
        }
    }
    let macs: Vec<[u8; 6]> = wanted.iter().map(|w| w.1).collect();
    let now = current(&macs)?;
    let moved: Vec<(usize, &String)> = now
        .iter()
        .enumerate()
        .filter(|(i, n)| n.as_str() != wanted[*i].0)
        .collect();
    let mut plan: Vec<(String, String)> = moved
        .iter()
        .map(|(i, n)| (n.to_string(), format!("hxrename{i}")))
        .collect();
    plan.extend(
        moved
            .iter()
            .map(|(i, _)| (format!("hxrename{i}"), wanted[*i].0.to_string())),
    );
    Ok(plan)
}

/// IPv6 on `ifname` (up already): the address with duplicate address detection off, so it is
/// usable at once (not "tentative" for a second while the workload may already connect; hx's
/// IPAM gives each address to one container, so there is nothing to detect), no router
/// advertisements (the spec is the configuration), then the default route via `gateway6`.
fn configure6(
    ifname: &str,
    address6: &str,
    gateway6: Option<&str>,
    sock4: &Sock,
) -> Result<(), InitError> {
    let (ip, prefix) = pv_init::spec::parse_cidr6(address6)
        .ok_or_else(|| InitError::setup(format!("network: bad IPv6 address {address6:?}")))?;
    let gw = gateway6
        .map(|g| {
            pv_init::spec::parse_gateway6(g)
                .ok_or_else(|| InitError::setup(format!("network: bad IPv6 gateway {g:?}")))
        })
        .transpose()?;
    let conf = |dev: &str, key: &str, v: &str| {
        let p = format!("/proc/sys/net/ipv6/conf/{dev}/{key}");
        std::fs::write(&p, v).map_err(|e| InitError::setup(format!("network: {p}: {e}")))
    };
    for dev in ["all", "default", ifname] {
        conf(dev, "accept_dad", "0")?;
        conf(dev, "accept_ra", "0")?;
    }
    conf(ifname, "disable_ipv6", "0")?;
    let index = sock4.index(ifname)?;
    let sock = Sock::of(libc::AF_INET6)?;
    sock.add_addr6(index, ip, prefix)?;
    if let Some(gw) = gw {
        sock.default_route6(index, gw)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr() {
        assert_eq!(
            parse_cidr("10.88.0.5/16"),
            Some((Ipv4Addr::new(10, 88, 0, 5), 16))
        );
        assert_eq!(parse_cidr("10.88.0.5"), None);
        assert_eq!(parse_cidr("10.88.0.5/33"), None);
    }

    #[test]
    fn nics_are_renamed_by_mac_through_temporary_names() {
        let (a, b, c) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 3]);
        let wanted = [("eth0", a), ("eth1", b), ("eth2", c)];
        let swapped = |_: &[[u8; 6]]| Ok(vec!["eth1".into(), "eth0".into(), "eth2".into()]);
        let plan = renames(&wanted, swapped).unwrap();
        let s = |x: &str, y: &str| (x.to_string(), y.to_string());
        assert_eq!(
            plan,
            [
                s("eth1", "hxrename0"),
                s("eth0", "hxrename1"),
                s("hxrename0", "eth0"),
                s("hxrename1", "eth1")
            ]
        );
        let right = |_: &[[u8; 6]]| Ok(vec!["eth0".into(), "eth1".into(), "eth2".into()]);
        assert!(renames(&wanted, right).unwrap().is_empty());
        let never = |_: &[[u8; 6]]| -> Result<Vec<String>, InitError> { unreachable!() };
        assert!(renames(&[("eth0", a), ("eth1", a)], never).is_err());
        let never = |_: &[[u8; 6]]| -> Result<Vec<String>, InitError> { unreachable!() };
        assert!(renames(&[("eth0", a), ("eth0", b)], never).is_err());
        let never = |_: &[[u8; 6]]| -> Result<Vec<String>, InitError> { unreachable!() };
        assert!(renames(&[("eth0", a), ("a/b", b)], never).is_err());
        let never = |_: &[[u8; 6]]| -> Result<Vec<String>, InitError> { unreachable!() };
        assert!(renames(&[("eth0", a), ("averyveryverylongname", b)], never).is_err());
    }

    #[test]
    fn rtentry_has_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<RtEntry>(), 120);
        assert_eq!(std::mem::size_of::<In6RtMsg>(), 80);
    }
}
