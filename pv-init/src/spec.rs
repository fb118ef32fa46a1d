//! The container spec: what the toolstack asks pv-init to run.
use serde::{Deserialize, Serialize};
use std::io::Read;

pub const SPEC_VERSION: u32 = 1;
pub const CONFIG_MAGIC: &[u8; 8] = b"HXSPEC01";
pub const CONFIG_MAX_JSON: usize = 1 << 20;
pub const CONFIG_ALIGN: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerSpec {
    pub version: u32,
    /// argv; argv[0] is looked up in the spec's PATH when it has no '/'.
    pub args: Vec<String>,
    /// KEY=VALUE pairs, in order.
    pub env: Vec<String>,
    /// Working directory inside the container (absolute).
    pub cwd: String,
    /// `""` (root), `name`, `uid`, `name:group`, `uid:gid`: resolved in the image's /etc/passwd and /etc/group.
    pub user: String,
    pub hostname: String,
    /// Index of the read-only image rootfs disk.
    pub rootfs: DiskFs,
    /// Where the writable overlay upper lives.
    pub upper: Upper,
    /// Extra mounts, applied after the root is assembled, in order.
    #[serde(default)]
    pub mounts: Vec<Mount>,
    /// Network configuration; None = loopback only.
    #[serde(default)]
    pub network: Option<Network>,
    /// `-i`: the workload's stdin comes from the host (QEMU: the `hx.stdin` port; Xen: the
    /// console's input). Without it stdin is /dev/null.
    #[serde(default)]
    pub stdin: bool,
    /// `-t`: the workload runs on a terminal (a pty in the guest) of this initial size.
    #[serde(default)]
    pub tty: Option<TtySize>,
    /// `--shm-size`: bytes of the /dev/shm tmpfs (None: docker's default, 64 MiB).
    #[serde(default)]
    pub shm_size: Option<u64>,
    /// `--ulimit` (and docker's defaults): resource limits the workload starts with.
    #[serde(default)]
    pub rlimits: Vec<Rlimit>,
    /// `--sysctl`: written to /proc/sys before the workload starts, in order.
    #[serde(default)]
    pub sysctls: Vec<Sysctl>,
    /// More names for the container's own address in /etc/hosts, after the hostname (its
    /// `--name`).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// `--add-host` lines for /etc/hosts (`IP\tNAME`), with or without a network.
    #[serde(default)]
    pub extra_hosts: Vec<String>,
    /// `--read-only`: the root is remounted read-only once it is assembled (volumes, tmpfs
    /// mounts, /dev, /dev/shm stay writable, as with docker). Left out when false, so that a
    /// spec without it still reads in a pv-init that predates it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// The workload's capability sets (docker's default set, `--cap-add`/`--cap-drop`,
    /// `--privileged`, an OCI spec's `process.capabilities`); every `hx exec` into the
    /// container gets them too unless it asks otherwise. None: left as pv-init has them (all),
    /// what a spec from before capabilities meant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
    /// `--security-opt no-new-privileges`: setuid files and file capabilities grant nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_new_privileges: bool,
    /// `--init`: the workload runs in pv-init's PID namespace, pv-init its init (docker's
    /// `--init`, with pv-init as docker-init); without it the workload is the init of its own,
    /// as with docker. Its mount namespace and /proc are its own either way.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub init: bool,
    /// Pods: a member in the pod VM's PID namespace instead of its own (CRI's
    /// `shareProcessNamespace`); meaningless for a VM's own workload.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shared_pids: bool,
    /// The most processes and threads the container's workload and execs may have at once
    /// (`--pids-limit`; a cgroup of their own in the VM). None: the VM's own bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<u64>,
    /// Pods: a member in this running member's PID namespace (its container id) instead of
    /// one of its own (CRI's NamespaceMode TARGET: `kubectl debug --target`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_target: Option<String>,
    /// The workload's system-call filter, compiled in dom0 (docker's default profile, an OCI
    /// spec's `linux.seccomp`); every `hx exec` into the container gets it too. None: no
    /// filter (`seccomp=unconfined`, `--privileged`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp: Option<Seccomp>,
}

/// A seccomp filter as the kernel takes it (seccomp(2), `SECCOMP_SET_MODE_FILTER`): classic
/// BPF compiled in dom0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seccomp {
    /// The `struct sock_filter`s, 8 little-endian bytes each (code u16, jt, jf, k u32),
    /// base64: a thousand instructions in 11 KB of a request bounded by mux::MAX_REQUEST.
    pub program: String,
    /// `SECCOMP_FILTER_FLAG_LOG`, `SECCOMP_FILTER_FLAG_SPEC_ALLOW`.
    #[serde(default)]
    pub flags: u32,
    /// hx's default profile, which nobody asked for by name: on a guest kernel without
    /// seccomp it is left out (and the kernel log says so), as docker leaves its default out;
    /// a profile asked for fails the start there.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

impl Seccomp {
    /// The kernel's BPF_MAXINSNS.
    pub const MAX_INSNS: usize = 4096;
    /// The flags a spec may ask for (LOG, SPEC_ALLOW).
    pub const KNOWN_FLAGS: u32 = 2 | 4;

    /// From the program's bytes as libseccomp exports them (8 per instruction).
    pub fn from_bytes(bytes: &[u8], flags: u32, optional: bool) -> Self {
        use base64::Engine;
        Seccomp {
            program: base64::engine::general_purpose::STANDARD.encode(bytes),
            flags,
            optional,
        }
    }

    /// The instructions as (code, jt, jf, k), checked as the kernel would take them: 1..=4096
    /// of them, known flags. Bounded before decoding.
    pub fn instructions(&self) -> Result<Vec<(u16, u8, u8, u32)>, String> {
        use base64::Engine;
        if self.program.len() > (Self::MAX_INSNS * 8).div_ceil(3) * 4 {
            return Err(format!(
                "a seccomp program of more than {} instructions",
                Self::MAX_INSNS
            ));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&self.program)
            .map_err(|_| "a seccomp program that is not base64".to_string())?;
        if bytes.is_empty() || !bytes.len().is_multiple_of(8) || bytes.len() / 8 > Self::MAX_INSNS {
            return Err(format!(
                "a seccomp program of {} bytes (1..={} instructions of 8)",
                bytes.len(),
                Self::MAX_INSNS
            ));
        }
        if self.flags & !Self::KNOWN_FLAGS != 0 {
            return Err(format!("seccomp flags {:#x}", self.flags));
        }
        Ok(bytes
            .chunks_exact(8)
            .map(|c| {
                (
                    u16::from_le_bytes([c[0], c[1]]),
                    c[2],
                    c[3],
                    u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
                )
            })
            .collect())
    }
}

/// A process's capability sets, bit N for capability N as the kernel numbers them
/// (capabilities(7)); bits the guest's kernel does not know are ignored. Applied as runc does:
/// the bounding set before the user changes, the others after it (pv-init's process.rs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    #[serde(default)]
    pub inheritable: u64,
    #[serde(default)]
    pub ambient: u64,
}

impl Capabilities {
    /// docker's default set (moby's oci/caps/defaults.go): CHOWN, DAC_OVERRIDE, FOWNER, FSETID,
    /// KILL, SETGID, SETUID, SETPCAP, NET_BIND_SERVICE, NET_RAW, SYS_CHROOT, MKNOD, AUDIT_WRITE,
    /// SETFCAP: what `grep CapBnd /proc/self/status` shows in a docker container.
    pub const DOCKER_DEFAULT: u64 = 0xa804_25fb;

    /// Every set but the inheritable and ambient ones holds `mask` (docker's way: a root
    /// workload gets them all, another user none after its exec).
    pub fn of(mask: u64) -> Self {
        Capabilities {
            bounding: mask,
            effective: mask,
            permitted: mask,
            inheritable: 0,
            ambient: 0,
        }
    }

    pub fn docker_default() -> Self {
        Self::of(Self::DOCKER_DEFAULT)
    }

    /// `--privileged`: everything the kernel has.
    pub fn all() -> Self {
        Self::of(u64::MAX)
    }
}

/// The resource names `docker run --ulimit` accepts (go-units' ulimit.go; `as` is not one).
pub const RLIMIT_NAMES: [&str; 15] = [
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// RLIM_INFINITY in `Rlimit`'s soft and hard.
pub const RLIM_UNLIMITED: u64 = u64::MAX;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rlimit {
    /// docker's name: nofile, nproc, core, ... (`RLIMIT_` + upper case).
    pub name: String,
    /// `RLIM_UNLIMITED` for unlimited.
    pub soft: u64,
    pub hard: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sysctl {
    /// Dotted key (net.ipv4.ip_forward): /proc/sys/net/ipv4/ip_forward.
    pub key: String,
    pub value: String,
}

/// What a `--tmpfs` mount asks beyond its size (docker's options).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TmpfsOptions {
    /// Bytes (overrides `size_mb`).
    #[serde(default)]
    pub size: Option<u64>,
    /// Permission bits of the root directory (tmpfs's default: 1777).
    #[serde(default)]
    pub mode: Option<u32>,
    #[serde(default)]
    pub uid: Option<u32>,
    #[serde(default)]
    pub gid: Option<u32>,
    #[serde(default)]
    pub noexec: bool,
    #[serde(default)]
    pub nosuid: bool,
    #[serde(default)]
    pub nodev: bool,
}

impl TmpfsOptions {
    /// The tmpfs mount data: `size=…,mode=…,uid=…,gid=…` (only what is set).
    pub fn data(&self, size_mb: u64) -> String {
        let mut o = Vec::new();
        match self.size {
            Some(b) if b > 0 => o.push(format!("size={b}")),
            Some(_) => {}
            None if size_mb > 0 => o.push(format!("size={size_mb}m")),
            None => {}
        }
        if let Some(m) = self.mode {
            o.push(format!("mode={:o}", m & 0o7777));
        }
        if let Some(u) = self.uid {
            o.push(format!("uid={u}"));
        }
        if let Some(g) = self.gid {
            o.push(format!("gid={g}"));
        }
        o.join(",")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TtySize {
    pub rows: u16,
    pub cols: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskFs {
    pub disk: u32,
    pub fstype: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Upper {
    /// tmpfs upper; size in MiB (0 = kernel default, half of RAM).
    Tmpfs { size_mb: u64 },
    /// A writable disk formatted by the host (ext4).
    Disk { disk: u32, fstype: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum MountSource {
    Disk {
        disk: u32,
        fstype: String,
    },
    Tmpfs {
        size_mb: u64,
        /// `--tmpfs PATH:OPTIONS`.
        #[serde(default)]
        options: TmpfsOptions,
    },
    /// A host directory shared over 9p, by mount tag: virtio-9p on QEMU, Xen's 9pfs transport
    /// on Xen (`hx.backend=` on the kernel command line says which).
    Share {
        tag: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    pub source: MountSource,
    /// Absolute path inside the container.
    pub target: String,
    pub readonly: bool,
    /// Mount only this entry of the source (a single file of a shared directory), bound onto
    /// `target`.
    #[serde(default)]
    pub subpath: Option<String>,
    /// A fresh (empty) volume first receives what the image has at `target`, like docker.
    #[serde(default)]
    pub copy_up: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// Interface to configure (eth0).
    pub interface: String,
    /// CIDR, e.g. 10.88.0.5/16.
    pub address: String,
    pub gateway: Option<String>,
    pub dns: Vec<String>,
    /// Extra /etc/hosts lines.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// resolv.conf `search` domains and `options`, from the host.
    #[serde(default)]
    pub dns_search: Vec<String>,
    #[serde(default)]
    pub dns_options: Vec<String>,
    /// The interface's MTU; None: the driver's default (1500). Under an OCI runtime: the MTU
    /// of the interface the VM took over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// A DNS relay on the host end of the NIC (the OCI runtime's keeper: docker's embedded
    /// DNS at 127.0.0.11 answers only inside the container's network namespace, docs/docker.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_relay: Option<DnsRelay>,
    /// The interface's MAC (`02:42:0a:58:00:05`), which pv-init gives it when it has another
    /// one: a guest restored from a warm-start template kept the template's. Left out when
    /// None, so that a spec without it still reads in a pv-init that predates it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// IPv6 on the interface (a user network made with `--ipv6`): CIDR, e.g. `fd42:1::2/64`
    /// (`parse_cidr6`). Left out when None, like `mac`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address6: Option<String>,
    /// The IPv6 default route's gateway, on `address6`'s subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<String>,
    /// The container's further interfaces (docker's eth1, eth2... for a container on several
    /// networks), at most `MAX_EXTRA_INTERFACES`. Left out when empty, like `mac`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra: Vec<Interface>,
}

/// How many interfaces a guest may have besides its first.
pub const MAX_EXTRA_INTERFACES: usize = 7;

/// A further interface of the guest, found by its MAC (the order a kernel names NICs in is
/// no contract) and renamed `interface`. Its gateways, when set, make the default routes (the
/// namespace the VM took over routes through it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interface {
    pub interface: String,
    pub mac: String,
    /// CIDR, e.g. 172.19.0.3/16.
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address6: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<String>,
}

/// An interface name the kernel takes (below IFNAMSIZ, no `/`, `:` or space, not `.`/`..`),
/// the same rule as `dev_valid_name`, narrowed to the characters interface names use.
pub fn valid_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() < 16
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// `fd42:1::2/64` → an IPv6 unicast address and its prefix length (1..=128, decimal digits
/// only). Refused: no prefix, the unspecified, loopback, multicast and IPv4-mapped addresses
/// (none can be an interface's address on a network).
pub fn parse_cidr6(s: &str) -> Option<(std::net::Ipv6Addr, u8)> {
    if s.len() > 64 {
        return None;
    }
    let (ip, len) = s.split_once('/')?;
    if len.is_empty()
        || len.len() > 3
        || len.starts_with('0')
        || !len.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let len: u8 = len.parse().ok()?;
    let ip: std::net::Ipv6Addr = ip.parse().ok()?;
    let usable = (1..=128).contains(&len)
        && !ip.is_unspecified()
        && !ip.is_loopback()
        && !ip.is_multicast()
        && ip.to_ipv4_mapped().is_none();
    usable.then_some((ip, len))
}

/// A gateway for `parse_cidr6`'s address: a plain IPv6 unicast address, as strictly.
pub fn parse_gateway6(s: &str) -> Option<std::net::Ipv6Addr> {
    if s.len() > 45 || s.contains('/') {
        return None;
    }
    parse_cidr6(&format!("{s}/128")).map(|(ip, _)| ip)
}

/// How the guest reaches a DNS relay on the host end of its NIC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsRelay {
    /// A second address of the interface (CIDR, link-local), on a subnet holding `server`:
    /// the source of the guest's queries, which the relay answers.
    pub address: String,
    /// The relay's address.
    pub server: String,
    /// A resolv.conf `nameserver` the guest cannot reach itself (127.0.0.11): the guest's
    /// resolv.conf names `server` in its place.
    pub replaces: String,
}

/// resolv.conf `text` with every `nameserver REPLACES` line naming `server` instead; None when
/// no line names `replaces` (nothing to change).
pub fn resolv_via_relay(text: &str, replaces: &str, server: &str) -> Option<String> {
    let mut changed = false;
    let mut out = String::with_capacity(text.len() + 16);
    for line in text.lines() {
        let mut w = line.split_whitespace();
        if w.next() == Some("nameserver") && w.next() == Some(replaces) && w.next().is_none() {
            out.push_str("nameserver ");
            out.push_str(server);
            changed = true;
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    changed.then_some(out)
}

/// `02:42:0a:58:00:05` (six pairs of hex digits, either case) → the bytes; None otherwise.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in out.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 || !p.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// `net.ipv4.ip_forward` → `/proc/sys/net/ipv4/ip_forward`; None for anything that is not
/// dot-separated plain components (no empty ones, no `/`, no `..`).
pub fn sysctl_path(key: &str) -> Option<String> {
    let ok = !key.is_empty()
        && key.len() <= 256
        && key.split('.').all(|c| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        });
    ok.then(|| format!("/proc/sys/{}", key.replace('.', "/")))
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigDiskError {
    #[error("config disk: bad magic (not an hx config disk)")]
    BadMagic,
    #[error("config disk: spec length {0} out of range")]
    BadLength(usize),
    #[error("config disk: truncated ({have} of {want} bytes)")]
    Truncated { have: usize, want: usize },
    #[error("config disk: invalid spec JSON: {0}")]
    Json(String),
    #[error("config disk: spec version {0} unsupported (this pv-init speaks {SPEC_VERSION})")]
    Version(u32),
    #[error("config disk: {0}")]
    Io(String),
}

/// Length of the header: magic, then the JSON's length as u32 little-endian.
const CONFIG_HEADER: usize = 12;
/// Longest JSON error message kept: serde's messages quote input (an unknown field's name).
const JSON_ERROR_MAX: usize = 240;

/// serde_json's message, escaped (it quotes field names from the input as they are) and cut.
fn json_error(e: &serde_json::Error) -> ConfigDiskError {
    let escaped: String = e.to_string().chars().flat_map(char::escape_debug).collect();
    let mut msg: String = escaped.chars().take(JSON_ERROR_MAX).collect();
    if msg.len() < escaped.len() {
        msg.push_str("...");
    }
    ConfigDiskError::Json(msg)
}

impl ContainerSpec {
    /// Encodes the spec as config-disk bytes: magic, u32-le length, JSON, zero padding.
    pub fn to_config_disk(&self) -> Vec<u8> {
        let json = serde_json::to_vec(self).expect("spec serializes");
        let mut out = Vec::with_capacity(json.len() + 12 + CONFIG_ALIGN);
        out.extend_from_slice(CONFIG_MAGIC);
        out.extend_from_slice(&(json.len() as u32).to_le_bytes());
        out.extend_from_slice(&json);
        let padded = out.len().div_ceil(CONFIG_ALIGN) * CONFIG_ALIGN;
        out.resize(padded, 0);
        out
    }

    /// Decodes config-disk bytes; untrusted input, strictly checked.
    pub fn from_config_disk(bytes: &[u8]) -> Result<Self, ConfigDiskError> {
        Self::read_config_disk(&mut &bytes[..])
    }

    /// Reads a config disk from its start (the block device itself): the header, then only
    /// the bytes its length names, so memory follows what the disk really holds (at most
    /// CONFIG_MAX_JSON), never the length field alone.
    pub fn read_config_disk(r: &mut impl Read) -> Result<Self, ConfigDiskError> {
        let mut head = Vec::with_capacity(CONFIG_HEADER);
        r.take(CONFIG_HEADER as u64)
            .read_to_end(&mut head)
            .map_err(|e| ConfigDiskError::Io(e.to_string()))?;
        if head.len() < CONFIG_HEADER || &head[..8] != CONFIG_MAGIC {
            return Err(ConfigDiskError::BadMagic);
        }
        let len = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes")) as usize;
        if len == 0 || len > CONFIG_MAX_JSON {
            return Err(ConfigDiskError::BadLength(len));
        }
        let mut body = Vec::new();
        r.take(len as u64)
            .read_to_end(&mut body)
            .map_err(|e| ConfigDiskError::Io(e.to_string()))?;
        if body.len() < len {
            return Err(ConfigDiskError::Truncated {
                have: body.len(),
                want: len,
            });
        }
        let spec: ContainerSpec = serde_json::from_slice(&body).map_err(|e| json_error(&e))?;
        if spec.version != SPEC_VERSION {
            return Err(ConfigDiskError::Version(spec.version));
        }
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A seccomp program is taken only as the kernel could: whole 8-byte instructions, 1 to
    /// 4096 of them (a longer text refused before it is decoded), base64, known flags.
    #[test]
    fn seccomp_programs_are_checked_before_use() {
        let ok = Seccomp::from_bytes(&[6, 0, 0, 0, 0, 0, 0xff, 0x7f], 0, false);
        assert_eq!(ok.instructions().unwrap(), [(6, 0, 0, 0x7fff_0000)]);
        let bad = |s: Seccomp| s.instructions().unwrap_err();
        assert!(bad(Seccomp::from_bytes(&[], 0, false)).contains("0 bytes"));
        assert!(bad(Seccomp::from_bytes(&[0; 7], 0, false)).contains("7 bytes"));
        assert!(bad(Seccomp::from_bytes(&[0; 8 * 4097], 0, false)).contains("more than 4096"));
        assert!(bad(Seccomp::from_bytes(&[0; 8], 1, false)).contains("flags 0x1"));
        let not_base64 = Seccomp {
            program: "!!!!".into(),
            flags: 0,
            optional: false,
        };
        assert!(bad(not_base64).contains("not base64"));
    }

    #[test]
    fn resolv_conf_names_the_relay_instead_of_127_0_0_11() {
        let docker = "search lan\nnameserver 127.0.0.11\noptions ndots:0\n";
        assert_eq!(
            resolv_via_relay(docker, "127.0.0.11", "169.254.53.1").as_deref(),
            Some("search lan\nnameserver 169.254.53.1\noptions ndots:0\n")
        );
        assert_eq!(
            resolv_via_relay("nameserver 10.0.0.1\n", "127.0.0.11", "169.254.53.1"),
            None
        );
        assert_eq!(
            resolv_via_relay(
                "# nameserver 127.0.0.11\nnameserver 127.0.0.111\n",
                "127.0.0.11",
                "x"
            ),
            None
        );
    }

    fn sample() -> ContainerSpec {
        ContainerSpec {
            version: SPEC_VERSION,
            args: vec!["sh".into(), "-c".into(), "echo hi".into()],
            env: vec!["PATH=/bin".into()],
            cwd: "/".into(),
            user: "".into(),
            hostname: "c1".into(),
            rootfs: DiskFs {
                disk: 0,
                fstype: "erofs".into(),
            },
            upper: Upper::Tmpfs { size_mb: 0 },
            read_only: false,
            capabilities: None,
            no_new_privileges: false,
            init: false,
            shared_pids: false,
            pids_limit: None,
            pid_target: None,
            seccomp: None,
            mounts: vec![Mount {
                source: MountSource::Tmpfs {
                    size_mb: 0,
                    options: TmpfsOptions {
                        size: Some(4096),
                        mode: Some(0o1770),
                        noexec: true,
                        ..Default::default()
                    },
                },
                target: "/run".into(),
                readonly: false,
                subpath: None,
                copy_up: false,
            }],
            network: None,
            stdin: true,
            tty: Some(TtySize { rows: 24, cols: 80 }),
            shm_size: Some(1 << 30),
            rlimits: vec![Rlimit {
                name: "nofile".into(),
                soft: 1 << 20,
                hard: RLIM_UNLIMITED,
            }],
            sysctls: vec![Sysctl {
                key: "net.core.somaxconn".into(),
                value: "1024".into(),
            }],
            aliases: vec!["web".into()],
            extra_hosts: vec!["10.1.2.3\tdb".into()],
        }
    }

    #[test]
    fn config_disk_round_trips_and_is_aligned() {
        let bytes = sample().to_config_disk();
        assert_eq!(bytes.len() % CONFIG_ALIGN, 0);
        assert_eq!(ContainerSpec::from_config_disk(&bytes).unwrap(), sample());
    }

    #[test]
    fn config_disk_rejects_garbage() {
        assert_eq!(
            ContainerSpec::from_config_disk(&[0u8; 4096]),
            Err(ConfigDiskError::BadMagic)
        );
        let mut bytes = sample().to_config_disk();
        bytes[8..12].copy_from_slice(&(u32::MAX).to_le_bytes());
        assert_eq!(
            ContainerSpec::from_config_disk(&bytes),
            Err(ConfigDiskError::BadLength(u32::MAX as usize))
        );
        let mut bytes = sample().to_config_disk();
        bytes[8..12].copy_from_slice(&(9000u32).to_le_bytes());
        assert!(matches!(
            ContainerSpec::from_config_disk(&bytes[..100]),
            Err(ConfigDiskError::Truncated { .. })
        ));
        let mut bytes = sample().to_config_disk();
        bytes[12] = b'x';
        assert!(matches!(
            ContainerSpec::from_config_disk(&bytes),
            Err(ConfigDiskError::Json(_))
        ));
    }

    #[test]
    fn keys_become_paths_under_proc_sys_only() {
        assert_eq!(
            sysctl_path("net.ipv4.ip_forward").as_deref(),
            Some("/proc/sys/net/ipv4/ip_forward")
        );
        assert_eq!(
            sysctl_path("net.ipv4.conf.eth0.rp_filter").as_deref(),
            Some("/proc/sys/net/ipv4/conf/eth0/rp_filter")
        );
        for bad in [
            "",
            ".",
            "net..x",
            "net/../../etc",
            "net.ipv4/../x",
            "net.",
            ".net",
            "net.a b",
            "net.\u{0}",
            "net.é",
        ] {
            assert_eq!(sysctl_path(bad), None, "{bad:?}");
        }
        assert_eq!(sysctl_path(&"n.".repeat(200)), None);
    }

    #[test]
    fn macs_are_six_hex_pairs() {
        assert_eq!(
            parse_mac("02:42:0a:58:00:05"),
            Some([0x02, 0x42, 0x0a, 0x58, 0x00, 0x05])
        );
        assert_eq!(parse_mac("02:42:0A:58:00:FF").map(|m| m[5]), Some(0xff));
        for bad in [
            "",
            "02:42:0a:58:00",
            "02:42:0a:58:00:05:06",
            "02:42:0a:58:00:5",
            "02:42:0a:58:00:+5",
            "02-42-0a-58-00-05",
            "02:42:0a:58:00:05:",
            "0242:0a:58:00:05:",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn a_mac_round_trips_and_nothing_panics(bytes in proptest::prelude::any::<[u8; 6]>(), junk in ".{0,40}") {
            let text = bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
            proptest::prop_assert_eq!(parse_mac(&text), Some(bytes));
            let _ = parse_mac(&junk);
        }

        /// Any address and length: what is accepted is a usable unicast address with a length
        /// of 1..=128 and prints back as given; anything else is refused without panicking.
        #[test]
        fn an_ipv6_cidr_is_parsed_strictly(raw in proptest::prelude::any::<u128>(), len in 0u16..300, junk in "[0-9a-fA-F:./ +-]{0,50}") {
            let ip = std::net::Ipv6Addr::from(raw);
            let text = format!("{ip}/{len}");
            match parse_cidr6(&text) {
                Some((got, l)) => {
                    proptest::prop_assert_eq!((got, l as u16), (ip, len));
                    proptest::prop_assert!((1..=128).contains(&len));
                    proptest::prop_assert!(!ip.is_multicast() && !ip.is_unspecified() && !ip.is_loopback());
                    proptest::prop_assert_eq!(parse_gateway6(&ip.to_string()), Some(ip));
                }
                None => proptest::prop_assert!(
                    !(1..=128).contains(&len) || ip.is_multicast() || ip.is_unspecified()
                        || ip.is_loopback() || ip.to_ipv4_mapped().is_some()
                ),
            }
            if let Some((_, l)) = parse_cidr6(&junk) {
                proptest::prop_assert!((1..=128).contains(&l));
            }
            let _ = parse_gateway6(&junk);
        }
    }

    #[test]
    fn ipv6_cidrs() {
        assert_eq!(
            parse_cidr6("fd42:1::2/64"),
            Some(("fd42:1::2".parse().unwrap(), 64))
        );
        for bad in [
            "fd42:1::2",
            "fd42:1::2/",
            "fd42:1::2/0",
            "fd42:1::2/129",
            "fd42:1::2/+64",
            "fd42:1::2/ 64",
            "::/64",
            "::1/128",
            "ff02::1/64",
            "::ffff:10.0.0.1/96",
            "10.0.0.1/24",
            "fd42:1::2/0064",
        ] {
            assert_eq!(parse_cidr6(bad), None, "{bad}");
        }
        assert_eq!(
            parse_gateway6("fd42:1::1"),
            Some("fd42:1::1".parse().unwrap())
        );
        assert_eq!(parse_gateway6("fd42:1::1/64"), None);
    }
}
