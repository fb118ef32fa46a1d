//! Domain configuration in plain Rust, validated before anything reaches libxl.
use crate::error::XenError;
use libxl_sys as sys;
use std::ffi::CString;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainType {
    /// PVH: hardware-virtualised CPU, no device model; needs a kernel with a PVH entry point.
    Pvh,
    /// Classic PV: needs a Xen-PV-capable kernel; works without VT-x/AMD-V.
    Pv,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSpec {
    /// A file or block device in dom0 (raw format).
    pub target: PathBuf,
    /// Guest device name: xvda, xvdb, ... (`vdev_for_index`).
    pub vdev: String,
    pub readonly: bool,
}

impl DiskSpec {
    /// Disk number `index` of the guest protocol (0 = rootfs, 1 = config, ...).
    pub fn indexed(index: usize, target: impl Into<PathBuf>, readonly: bool) -> Self {
        DiskSpec {
            target: target.into(),
            vdev: vdev_for_index(index),
            readonly,
        }
    }
}

/// Fills an initialised libxl disk: `d` as a raw file or device behind blkback in dom0, with
/// `script` as its hotplug script (libxl's `block` when None).
///
/// # Safety
/// `disk` was initialised by `libxl_device_disk_init` and its strings are libxl's to free.
pub(crate) unsafe fn fill_disk(
    disk: &mut sys::libxl_device_disk,
    d: &DiskSpec,
    script: Option<&Path>,
) -> Result<(), XenError> {
    disk.pdev_path = libxl_str("disk target", &d.target.to_string_lossy())?;
    disk.vdev = libxl_str("vdev", &d.vdev)?;
    disk.format = sys::LIBXL_DISK_FORMAT_RAW;
    disk.backend = sys::LIBXL_DISK_BACKEND_PHY;
    disk.readwrite = if d.readonly { 0 } else { 1 };
    disk.backend_domid = 0;
    if let Some(script) = script {
        disk.script = libxl_str("disk script", &script.to_string_lossy())?;
    }
    Ok(())
}

/// # Safety
/// `nic` was initialised by `libxl_device_nic_init` and owns the strings set here.
pub(crate) unsafe fn fill_nic_spec(
    nic: &mut sys::libxl_device_nic,
    n: &NicSpec,
) -> Result<(), XenError> {
    nic.bridge = libxl_str("bridge", &n.bridge)?;
    if let Some(m) = n.mac.as_deref().and_then(parse_mac) {
        nic.mac = m;
    }
    if let Some(ip) = n.ip {
        nic.ip = libxl_str("nic ip", &ip.to_string())?;
    }
    if let Some(v) = &n.vifname {
        nic.ifname = libxl_str("vif name", v)?;
    }
    if let Some(script) = &n.script {
        nic.script = libxl_str("vif script", &script.to_string_lossy())?;
    }
    nic.backend_domid = 0;
    Ok(())
}

/// xvda..xvdz, then xvdaa, xvdab, ... (Linux's blkfront naming).
pub fn vdev_for_index(index: usize) -> String {
    let mut letters = Vec::new();
    let mut n = index + 1;
    while n > 0 {
        n -= 1;
        letters.push(b'a' + (n % 26) as u8);
        n /= 26;
    }
    letters.reverse();
    format!("xvd{}", String::from_utf8(letters).expect("ASCII letters"))
}

/// The index `vdev_for_index` gave this name, if it is one of its names.
pub fn vdev_index(vdev: &str) -> Option<usize> {
    let letters = vdev.strip_prefix("xvd")?;
    if letters.is_empty() || letters.len() > 2 || !letters.bytes().all(|b| b.is_ascii_lowercase()) {
        return None;
    }
    Some(
        letters
            .bytes()
            .fold(0usize, |n, b| n * 26 + (b - b'a') as usize + 1)
            - 1,
    )
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicSpec {
    /// The dom0 bridge the vif joins (vif-bridge hotplug script).
    pub bridge: String,
    /// xx:xx:xx:xx:xx:xx; None: libxl picks 00:16:3e:xx:xx:xx.
    pub mac: Option<String>,
    /// The guest's address, for the hotplug scripts' anti-spoofing rules.
    pub ip: Option<std::net::Ipv4Addr>,
    /// The vif's name in dom0 (default: libxl's `vif<domid>.<n>`).
    pub vifname: Option<String>,
    /// Hotplug script libxl runs for the vif instead of `vif-bridge` (absolute path).
    pub script: Option<PathBuf>,
}

/// A dom0 directory shared with the guest over Xen's PV 9pfs transport. libxl starts a QEMU in
/// dom0 for the domain as its 9pfs backend (Debian's `qemu-system-xen`); the guest mounts `tag`
/// with `-t 9p -o trans=xen`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct P9Spec {
    pub tag: String,
    /// An absolute directory in dom0.
    pub path: PathBuf,
    /// QEMU's `security_model`: `none` keeps the host's owners and modes, like a bind mount.
    pub security_model: String,
}

/// How dom0 reaches a PV channel. Channels are served by a QEMU that libxl starts in dom0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelConnection {
    /// A pty in dom0; find it with `Context::channel_tty`.
    Pty,
    /// A unix socket QEMU listens on (server=on,wait=off); hx connects to it.
    Socket(PathBuf),
}

/// A PV console channel: a named byte stream between dom0 and the guest
/// (docs/guest-protocol.md: hx.stdout, hx.stderr, hx.status, hx.control).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    pub name: String,
    pub connection: ChannelConnection,
}

/// What Xen does when the guest crashes. Power-off and reboot always destroy the domain
/// (guest-protocol.md: a guest panic reboots, and hx reads the panic from the console log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashAction {
    Destroy,
    /// Keep the dead domain for inspection (`xl dump-core`) until destroyed.
    Preserve,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainConfig {
    pub name: String,
    pub kind: DomainType,
    pub kernel: PathBuf,
    pub ramdisk: Option<PathBuf>,
    pub cmdline: String,
    pub memory_mb: u64,
    pub vcpus: u32,
    pub disks: Vec<DiskSpec>,
    pub nics: Vec<NicSpec>,
    pub channels: Vec<Channel>,
    pub p9s: Vec<P9Spec>,
    pub on_crash: CrashAction,
    /// Hotplug script libxl runs for every disk instead of its `block` script (absolute path).
    pub disk_script: Option<PathBuf>,
    /// Nodes libxl writes under /local/domain/<domid> in the transaction that creates the
    /// domain (`c_info.xsdata`): relative path → value. The guest may read them, not write.
    pub xsdata: Vec<(String, String)>,
}

/// Builder-style construction: `DomainConfig::pvh("hx-web", kernel).memory_mb(256).disk(..)`.
impl DomainConfig {
    pub fn new(kind: DomainType, name: impl Into<String>, kernel: impl Into<PathBuf>) -> Self {
        DomainConfig {
            name: name.into(),
            kind,
            kernel: kernel.into(),
            ramdisk: None,
            cmdline: String::new(),
            memory_mb: 128,
            vcpus: 1,
            disks: Vec::new(),
            nics: Vec::new(),
            channels: Vec::new(),
            p9s: Vec::new(),
            on_crash: CrashAction::Destroy,
            disk_script: None,
            xsdata: Vec::new(),
        }
    }

    pub fn pvh(name: impl Into<String>, kernel: impl Into<PathBuf>) -> Self {
        Self::new(DomainType::Pvh, name, kernel)
    }

    pub fn pv(name: impl Into<String>, kernel: impl Into<PathBuf>) -> Self {
        Self::new(DomainType::Pv, name, kernel)
    }

    pub fn ramdisk(mut self, path: impl Into<PathBuf>) -> Self {
        self.ramdisk = Some(path.into());
        self
    }

    pub fn cmdline(mut self, cmdline: impl Into<String>) -> Self {
        self.cmdline = cmdline.into();
        self
    }

    pub fn memory_mb(mut self, mb: u64) -> Self {
        self.memory_mb = mb;
        self
    }

    pub fn vcpus(mut self, n: u32) -> Self {
        self.vcpus = n;
        self
    }

    /// Appends disk number `disks.len()` (vdev xvda, xvdb, ... in order).
    pub fn disk(mut self, target: impl Into<PathBuf>, readonly: bool) -> Self {
        self.disks
            .push(DiskSpec::indexed(self.disks.len(), target, readonly));
        self
    }

    pub fn nic(mut self, nic: NicSpec) -> Self {
        self.nics.push(nic);
        self
    }

    pub fn channel(mut self, name: impl Into<String>, connection: ChannelConnection) -> Self {
        self.channels.push(Channel {
            name: name.into(),
            connection,
        });
        self
    }

    pub fn p9(mut self, p9: P9Spec) -> Self {
        self.p9s.push(p9);
        self
    }

    pub fn on_crash(mut self, action: CrashAction) -> Self {
        self.on_crash = action;
        self
    }

    /// Every disk's hotplug script (default: libxl's `block`).
    pub fn disk_script(mut self, path: impl Into<PathBuf>) -> Self {
        self.disk_script = Some(path.into());
        self
    }

    /// A node created with the domain, e.g. `("hx/id", container_id)`.
    pub fn xenstore_node(mut self, path: impl Into<String>, value: impl Into<String>) -> Self {
        self.xsdata.push((path.into(), value.into()));
        self
    }
}

fn cstring(what: &str, s: &str) -> Result<CString, XenError> {
    CString::new(s).map_err(|_| XenError::InvalidConfig(format!("{what} contains a NUL byte")))
}

/// A string libxl may free(): libxl's dispose functions release every char* with free().
pub(crate) fn libxl_str(what: &str, s: &str) -> Result<*mut libc::c_char, XenError> {
    let c = cstring(what, s)?;
    // SAFETY: strdup copies a valid C string into malloc'd memory.
    let p = unsafe { libc::strdup(c.as_ptr()) };
    if p.is_null() {
        return Err(XenError::InvalidConfig("out of memory".into()));
    }
    Ok(p)
}

pub(crate) fn calloc<T>(n: usize) -> *mut T {
    // SAFETY: zeroed memory for n plain C structs; libxl frees it with free().
    unsafe { libc::calloc(n.max(1), std::mem::size_of::<T>()) as *mut T }
}

impl DomainConfig {
    /// Checks everything libxl would otherwise reject late (or accept and misbehave on).
    pub fn validate(&self) -> Result<(), XenError> {
        let bad = |m: String| Err(XenError::InvalidConfig(m));
        if self.name.is_empty()
            || self.name.len() > 64
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        {
            return bad(format!(
                "domain name {:?}: 1-64 of [A-Za-z0-9_.-]",
                self.name
            ));
        }
        if self.name.bytes().all(|b| b.is_ascii_digit()) {
            return bad(format!(
                "domain name {:?}: all digits would read as a domid",
                self.name
            ));
        }
        if !self.kernel.is_absolute() {
            return bad(format!(
                "kernel {}: must be an absolute path",
                self.kernel.display()
            ));
        }
        if let Some(r) = &self.ramdisk {
            if !r.is_absolute() {
                return bad(format!("ramdisk {}: must be an absolute path", r.display()));
            }
        }
        // Linux's x86 COMMAND_LINE_SIZE; Xen's PV start_info holds 1024.
        let cmdline_max = match self.kind {
            DomainType::Pvh => 2048,
            DomainType::Pv => 1024,
        };
        if self.cmdline.len() >= cmdline_max {
            return bad(format!(
                "kernel command line: {} bytes, {} kind allows {}",
                self.cmdline.len(),
                self.kind_name(),
                cmdline_max - 1
            ));
        }
        if self.memory_mb < 16 || self.memory_mb > 1 << 20 {
            return bad(format!("memory {} MiB: 16..1048576", self.memory_mb));
        }
        if self.vcpus == 0 || self.vcpus > 128 {
            return bad(format!("vcpus {}: 1..128", self.vcpus));
        }
        let mut seen = std::collections::HashSet::new();
        for d in &self.disks {
            if vdev_index(&d.vdev).is_none() {
                return bad(format!(
                    "disk vdev {:?}: expected xvd[a-z] or xvd[a-z][a-z]",
                    d.vdev
                ));
            }
            if !seen.insert(&d.vdev) {
                return bad(format!("disk vdev {} used twice", d.vdev));
            }
            if !d.target.is_absolute() {
                return bad(format!(
                    "disk {} target {}: must be an absolute path",
                    d.vdev,
                    d.target.display()
                ));
            }
        }
        for n in &self.nics {
            if n.bridge.is_empty() || n.bridge.len() > 15 || n.bridge.contains(['/', ' ']) {
                return bad(format!("bridge {:?}: a network interface name", n.bridge));
            }
            if let Some(v) = &n.vifname {
                if v.is_empty()
                    || v.len() > 15
                    || !v
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
                {
                    return bad(format!(
                        "vif name {v:?}: an interface name of at most 15 characters"
                    ));
                }
            }
            if let Some(p) = &n.script {
                if !p.is_absolute() {
                    return bad(format!(
                        "vif script {}: must be an absolute path",
                        p.display()
                    ));
                }
            }
            if let Some(m) = &n.mac {
                match parse_mac(m) {
                    None => return bad(format!("mac {m:?}: expected xx:xx:xx:xx:xx:xx")),
                    Some(b) if b[0] & 1 == 1 => return bad(format!("mac {m}: multicast")),
                    Some(_) => {}
                }
            }
        }
        if let Some(p) = &self.disk_script {
            if !p.is_absolute() {
                return bad(format!(
                    "disk script {}: must be an absolute path",
                    p.display()
                ));
            }
        }
        for (k, v) in &self.xsdata {
            if k.starts_with('/') || xenstore_wire::check_path(k).is_err() {
                return bad(format!(
                    "xenstore node {k:?}: a relative path of [A-Za-z0-9_@/-]"
                ));
            }
            if v.len() > xenstore_wire::MAX_VALUE || v.contains('\0') {
                return bad(format!(
                    "xenstore node {k}: value longer than {} bytes or with NUL",
                    xenstore_wire::MAX_VALUE
                ));
            }
        }
        let mut tags = std::collections::HashSet::new();
        for p in &self.p9s {
            // The guest's 9p mount tag; Linux's xen 9pfs frontend compares it as a C string.
            if p.tag.is_empty()
                || p.tag.len() > 31
                || !p
                    .tag
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
                || !tags.insert(&p.tag)
            {
                return bad(format!(
                    "9pfs tag {:?}: 1-31 of [A-Za-z0-9_.-], each once",
                    p.tag
                ));
            }
            if !p.path.is_absolute() || p.path.as_os_str().as_encoded_bytes().contains(&0) {
                return bad(format!(
                    "9pfs {} path {}: must be an absolute path",
                    p.tag,
                    p.path.display()
                ));
            }
            if !["none", "passthrough", "mapped-xattr", "mapped-file"]
                .contains(&p.security_model.as_str())
            {
                return bad(format!(
                    "9pfs {} security model {:?}: none, passthrough, mapped-xattr or mapped-file",
                    p.tag, p.security_model
                ));
            }
        }
        let mut names = std::collections::HashSet::new();
        for c in &self.channels {
            if c.name.is_empty()
                || c.name.len() > 64
                || !c.name.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
                || !names.insert(&c.name)
            {
                return bad(format!(
                    "channel name {:?}: empty, repeated or not printable ASCII",
                    c.name
                ));
            }
            if let ChannelConnection::Socket(p) = &c.connection {
                // sun_path holds 108 bytes including the NUL.
                if !p.is_absolute() || p.as_os_str().len() > 107 {
                    return bad(format!(
                        "channel {} socket {}: absolute, at most 107 bytes",
                        c.name,
                        p.display()
                    ));
                }
            }
        }
        Ok(())
    }

    fn kind_name(&self) -> &'static str {
        match self.kind {
            DomainType::Pvh => "a PVH",
            DomainType::Pv => "a PV",
        }
    }

    /// The libxl form of this config; libxl owns its strings and arrays (freed by dispose).
    pub fn to_libxl(&self) -> Result<LibxlConfig, XenError> {
        self.validate()?;
        let mut cfg = LibxlConfig::new();
        let c = &mut cfg.inner;
        // SAFETY: c was initialised by libxl_domain_config_init; every pointer stored below is
        // malloc'd (strdup/calloc) as libxl_domain_config_dispose expects.
        unsafe {
            let kind = match self.kind {
                DomainType::Pvh => sys::LIBXL_DOMAIN_TYPE_PVH,
                DomainType::Pv => sys::LIBXL_DOMAIN_TYPE_PV,
            };
            c.c_info.type_ = kind;
            c.c_info.name = libxl_str("name", &self.name)?;
            // libxl does not make one up (xl does): without it every domain shares /vm/<nil>.
            sys::libxl_uuid_generate(&mut c.c_info.uuid);
            sys::libxl_domain_build_info_init_type(&mut c.b_info, kind);
            c.b_info.max_memkb = self.memory_mb * 1024;
            c.b_info.target_memkb = self.memory_mb * 1024;
            c.b_info.max_vcpus = self.vcpus as i32;
            c.b_info.kernel = libxl_str("kernel", &self.kernel.to_string_lossy())?;
            if let Some(r) = &self.ramdisk {
                c.b_info.ramdisk = libxl_str("ramdisk", &r.to_string_lossy())?;
            }
            c.b_info.cmdline = libxl_str("cmdline", &self.cmdline)?;
            c.on_poweroff = sys::LIBXL_ACTION_ON_SHUTDOWN_DESTROY;
            c.on_reboot = sys::LIBXL_ACTION_ON_SHUTDOWN_DESTROY;
            c.on_crash = match self.on_crash {
                CrashAction::Destroy => sys::LIBXL_ACTION_ON_SHUTDOWN_DESTROY,
                CrashAction::Preserve => sys::LIBXL_ACTION_ON_SHUTDOWN_PRESERVE,
            };

            if !self.xsdata.is_empty() {
                // NULL-terminated key, value, key, value, ... freed by libxl_key_value_list_dispose.
                let list = calloc::<*mut libc::c_char>(self.xsdata.len() * 2 + 1);
                c.c_info.xsdata = list;
                for (i, (k, v)) in self.xsdata.iter().enumerate() {
                    *list.add(2 * i) = libxl_str("xenstore node", k)?;
                    *list.add(2 * i + 1) = libxl_str("xenstore value", v)?;
                }
            }

            c.disks = calloc::<sys::libxl_device_disk>(self.disks.len());
            for (i, d) in self.disks.iter().enumerate() {
                let disk = &mut *c.disks.add(i);
                sys::libxl_device_disk_init(disk);
                c.num_disks = i as i32 + 1;
                fill_disk(disk, d, self.disk_script.as_deref())?;
            }
            c.nics = calloc::<sys::libxl_device_nic>(self.nics.len());
            for (i, n) in self.nics.iter().enumerate() {
                let nic = &mut *c.nics.add(i);
                sys::libxl_device_nic_init(nic);
                c.num_nics = i as i32 + 1;
                fill_nic_spec(nic, n)?;
            }
            c.channels = calloc::<sys::libxl_device_channel>(self.channels.len());
            for (i, ch) in self.channels.iter().enumerate() {
                let dev = &mut *c.channels.add(i);
                sys::libxl_device_channel_init(dev);
                c.num_channels = i as i32 + 1;
                dev.name = libxl_str("channel name", &ch.name)?;
                dev.backend_domid = 0;
                match &ch.connection {
                    ChannelConnection::Socket(p) => {
                        sys::libxl_device_channel_init_connection(
                            dev,
                            sys::LIBXL_CHANNEL_CONNECTION_SOCKET,
                        );
                        dev.u.socket.path = libxl_str("channel socket", &p.to_string_lossy())?;
                    }
                    ChannelConnection::Pty => sys::libxl_device_channel_init_connection(
                        dev,
                        sys::LIBXL_CHANNEL_CONNECTION_PTY,
                    ),
                }
            }
            c.p9s = calloc::<sys::libxl_device_p9>(self.p9s.len());
            for (i, p) in self.p9s.iter().enumerate() {
                let dev = &mut *c.p9s.add(i);
                sys::libxl_device_p9_init(dev);
                c.num_p9s = i as i32 + 1;
                dev.tag = libxl_str("9pfs tag", &p.tag)?;
                dev.path = libxl_str("9pfs path", &p.path.to_string_lossy())?;
                dev.security_model = libxl_str("9pfs security model", &p.security_model)?;
                dev.devid = i as i32;
                dev.backend_domid = 0;
            }
        }
        Ok(cfg)
    }
}

pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return None;
    }
    let mut out = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.len() != 2 {
            return None;
        }
        out[i] = u8::from_str_radix(p, 16).ok()?;
    }
    Some(out)
}

/// An initialised `libxl_domain_config`, disposed on drop.
pub struct LibxlConfig {
    pub(crate) inner: sys::libxl_domain_config,
}

// SAFETY: owns only malloc'd memory; libxl reads it from whichever thread runs the operation.
unsafe impl Send for LibxlConfig {}

impl LibxlConfig {
    pub(crate) fn new() -> Self {
        // SAFETY: libxl requires init on zeroed memory before use.
        unsafe {
            let mut inner: sys::libxl_domain_config = std::mem::zeroed();
            sys::libxl_domain_config_init(&mut inner);
            LibxlConfig { inner }
        }
    }

    pub fn raw(&self) -> &sys::libxl_domain_config {
        &self.inner
    }
}

impl Drop for LibxlConfig {
    fn drop(&mut self) {
        // SAFETY: inner was initialised by libxl_domain_config_init and holds only malloc'd data.
        unsafe { sys::libxl_domain_config_dispose(&mut self.inner) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn sample(kind: DomainType) -> DomainConfig {
        DomainConfig::new(kind, "hx-web", "/usr/local/lib/hx/vmlinux")
            .ramdisk("/var/lib/hx/assets/initramfs.cpio")
            .cmdline("console=hvc0 quiet")
            .memory_mb(128)
            .vcpus(2)
            .disk("/var/lib/hx/rootfs/x.erofs", true)
            .disk("/var/lib/hx/containers/c/config.img", true)
            .disk("/var/lib/hx/containers/c/upper.img", false)
            .nic(NicSpec {
                bridge: "hx0".into(),
                mac: Some("00:16:3e:01:02:03".into()),
                ip: Some([10, 88, 0, 5].into()),
                vifname: Some("hxv-web".into()),
                script: Some("/var/lib/hx/assets/hx-vif-hotplug".into()),
            })
            .channel(
                "hx.stdout",
                ChannelConnection::Socket("/run/hx/c/stdout.sock".into()),
            )
            .channel("hx.control", ChannelConnection::Pty)
            .xenstore_node("hx/id", "0123abcd")
            .xenstore_node("hx/control", "")
    }

    #[test]
    fn every_config_gets_its_own_uuid() {
        let a = sample(DomainType::Pvh).to_libxl().unwrap();
        let b = sample(DomainType::Pvh).to_libxl().unwrap();
        // SAFETY: reading initialised uuids.
        unsafe {
            assert_eq!(sys::libxl_uuid_is_nil(&a.raw().c_info.uuid), 0);
            assert_ne!(a.raw().c_info.uuid.uuid, b.raw().c_info.uuid.uuid);
        }
    }

    #[test]
    fn xenstore_nodes_reach_c_info_xsdata() {
        let cfg = sample(DomainType::Pvh).to_libxl().unwrap();
        // SAFETY: reading back the NULL-terminated list we stored.
        unsafe {
            let l = cfg.raw().c_info.xsdata;
            let s = |i: usize| CStr::from_ptr(*l.add(i)).to_str().unwrap().to_string();
            assert_eq!(
                [s(0), s(1), s(2), s(3)],
                ["hx/id", "0123abcd", "hx/control", ""]
            );
            assert!((*l.add(4)).is_null());
        }
        let bad = sample(DomainType::Pvh).xenstore_node("/abs/path", "x");
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("relative path"));
    }

    #[test]
    fn pvh_config_reaches_libxl_structures() {
        let cfg = sample(DomainType::Pvh).to_libxl().unwrap();
        let c = cfg.raw();
        // SAFETY: reading back C strings we stored.
        unsafe {
            assert_eq!(c.c_info.type_, sys::LIBXL_DOMAIN_TYPE_PVH);
            assert_eq!(c.b_info.type_, sys::LIBXL_DOMAIN_TYPE_PVH);
            assert_eq!(CStr::from_ptr(c.c_info.name).to_str().unwrap(), "hx-web");
            assert_eq!(c.b_info.max_memkb, 128 * 1024);
            assert_eq!(c.b_info.max_vcpus, 2);
            assert_eq!(
                CStr::from_ptr(c.b_info.cmdline).to_str().unwrap(),
                "console=hvc0 quiet"
            );
            assert_eq!(c.num_disks, 3);
            let d0 = &*c.disks;
            assert_eq!(CStr::from_ptr(d0.vdev).to_str().unwrap(), "xvda");
            assert_eq!(
                (d0.readwrite, d0.format, d0.backend),
                (0, sys::LIBXL_DISK_FORMAT_RAW, sys::LIBXL_DISK_BACKEND_PHY)
            );
            assert_eq!((*c.disks.add(2)).readwrite, 1);
            assert_eq!(c.num_nics, 1);
            assert_eq!((*c.nics).mac, [0x00, 0x16, 0x3e, 1, 2, 3]);
            assert_eq!(CStr::from_ptr((*c.nics).ip).to_str().unwrap(), "10.88.0.5");
            assert_eq!(CStr::from_ptr((*c.nics).bridge).to_str().unwrap(), "hx0");
            assert_eq!(
                CStr::from_ptr((*c.nics).script).to_str().unwrap(),
                "/var/lib/hx/assets/hx-vif-hotplug"
            );
            assert_eq!(
                CStr::from_ptr(c.b_info.kernel).to_str().unwrap(),
                "/usr/local/lib/hx/vmlinux"
            );
            assert_eq!(
                CStr::from_ptr(c.b_info.ramdisk).to_str().unwrap(),
                "/var/lib/hx/assets/initramfs.cpio"
            );
            assert_eq!(
                CStr::from_ptr((*c.channels).name).to_str().unwrap(),
                "hx.stdout"
            );
            assert_eq!(c.num_channels, 2);
            assert_eq!(
                (*c.channels).connection,
                sys::LIBXL_CHANNEL_CONNECTION_SOCKET
            );
            assert_eq!(
                CStr::from_ptr((*c.channels).u.socket.path)
                    .to_str()
                    .unwrap(),
                "/run/hx/c/stdout.sock"
            );
            assert_eq!(
                (*c.channels.add(1)).connection,
                sys::LIBXL_CHANNEL_CONNECTION_PTY
            );
            assert_eq!(c.on_poweroff, sys::LIBXL_ACTION_ON_SHUTDOWN_DESTROY);
            assert_eq!(c.on_reboot, sys::LIBXL_ACTION_ON_SHUTDOWN_DESTROY);
            assert_eq!(c.on_crash, sys::LIBXL_ACTION_ON_SHUTDOWN_DESTROY);
        }
    }

    #[test]
    fn p9_shares_reach_libxl_structures() {
        let cfg = sample(DomainType::Pvh)
            .p9(P9Spec {
                tag: "hxfs0".into(),
                path: "/srv/data".into(),
                security_model: "none".into(),
            })
            .p9(P9Spec {
                tag: "hxfs1".into(),
                path: "/srv/logs".into(),
                security_model: "none".into(),
            })
            .to_libxl()
            .unwrap();
        // SAFETY: reading back the array we stored.
        unsafe {
            let c = cfg.raw();
            assert_eq!(c.num_p9s, 2);
            let p = &*c.p9s.add(1);
            assert_eq!(CStr::from_ptr(p.tag).to_str().unwrap(), "hxfs1");
            assert_eq!(CStr::from_ptr(p.path).to_str().unwrap(), "/srv/logs");
            assert_eq!(CStr::from_ptr(p.security_model).to_str().unwrap(), "none");
            assert_eq!((p.devid, p.backend_domid), (1, 0));
        }
        let p9 = |tag: &str, path: &str, model: &str| P9Spec {
            tag: tag.into(),
            path: path.into(),
            security_model: model.into(),
        };
        for (bad, why) in [
            (
                sample(DomainType::Pvh).p9(p9("", "/srv", "none")),
                "9pfs tag",
            ),
            (
                sample(DomainType::Pvh).p9(p9("a b", "/srv", "none")),
                "9pfs tag",
            ),
            (
                sample(DomainType::Pvh)
                    .p9(p9("t", "/a", "none"))
                    .p9(p9("t", "/b", "none")),
                "each once",
            ),
            (
                sample(DomainType::Pvh).p9(p9("t", "srv", "none")),
                "absolute path",
            ),
            (
                sample(DomainType::Pvh).p9(p9("t", "/srv", "mapped")),
                "security model",
            ),
        ] {
            let e = bad.to_libxl().err().expect("refused").to_string();
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn pv_config_sets_pv_type() {
        let cfg = sample(DomainType::Pv).to_libxl().unwrap();
        assert_eq!(cfg.raw().c_info.type_, sys::LIBXL_DOMAIN_TYPE_PV);
        assert_eq!(cfg.raw().b_info.type_, sys::LIBXL_DOMAIN_TYPE_PV);
    }

    #[test]
    fn invalid_configs_are_refused_before_libxl() {
        let mut c = sample(DomainType::Pvh);
        c.disks[1].vdev = "sda".into();
        assert_eq!(
            c.to_libxl().err().unwrap().to_string(),
            "invalid domain config: disk vdev \"sda\": expected xvd[a-z] or xvd[a-z][a-z]"
        );
        let mut c = sample(DomainType::Pvh);
        c.disks[1].vdev = "xvda".into();
        assert!(c.validate().unwrap_err().to_string().contains("used twice"));
        let mut c = sample(DomainType::Pvh);
        c.name = "bad name".into();
        assert!(c.validate().is_err());
        let mut c = sample(DomainType::Pvh);
        c.memory_mb = 8;
        assert!(c.validate().is_err());
        let mut c = sample(DomainType::Pvh);
        c.nics[0].mac = Some("zz:00".into());
        assert!(c.validate().is_err());
        let mut c = sample(DomainType::Pvh);
        c.cmdline = "a\0b".into();
        assert!(c.to_libxl().is_err());
        let c = sample(DomainType::Pvh).nic(NicSpec {
            bridge: "hx0".into(),
            mac: Some("01:00:5e:00:00:01".into()),
            ip: None,
            vifname: None,
            script: None,
        });
        assert!(c.validate().unwrap_err().to_string().contains("multicast"));
        let c = sample(DomainType::Pvh).channel("hx.stdout", ChannelConnection::Pty);
        assert!(c.validate().unwrap_err().to_string().contains("repeated"));
        let c = sample(DomainType::Pvh).channel(
            "hx.x",
            ChannelConnection::Socket(format!("/{}", "s".repeat(120)).into()),
        );
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("at most 107 bytes"));
        let mut c = sample(DomainType::Pvh);
        c.kernel = "vmlinux".into();
        assert!(c.validate().unwrap_err().to_string().contains("absolute"));
        let mut c = sample(DomainType::Pvh);
        c.name = "42".into();
        assert!(c.validate().unwrap_err().to_string().contains("domid"));
    }

    #[test]
    fn pv_command_lines_are_shorter_than_pvh_ones() {
        let long = "x".repeat(1500);
        assert!(sample(DomainType::Pvh)
            .cmdline(long.clone())
            .validate()
            .is_ok());
        let e = sample(DomainType::Pv).cmdline(long).validate().unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid domain config: kernel command line: 1500 bytes, a PV kind allows 1023"
        );
    }

    #[test]
    fn crash_preserve_reaches_libxl() {
        let cfg = sample(DomainType::Pvh)
            .on_crash(CrashAction::Preserve)
            .to_libxl()
            .unwrap();
        assert_eq!(cfg.raw().on_crash, sys::LIBXL_ACTION_ON_SHUTDOWN_PRESERVE);
        assert_eq!(cfg.raw().on_reboot, sys::LIBXL_ACTION_ON_SHUTDOWN_DESTROY);
    }

    #[test]
    fn disk_indexes_name_vdevs_like_blkfront() {
        assert_eq!(vdev_for_index(0), "xvda");
        assert_eq!(vdev_for_index(25), "xvdz");
        assert_eq!(vdev_for_index(26), "xvdaa");
        assert_eq!(vdev_for_index(27), "xvdab");
        for i in [0, 1, 25, 26, 27, 100, 701] {
            assert_eq!(vdev_index(&vdev_for_index(i)), Some(i));
        }
        assert_eq!(vdev_index("xvd"), None);
        assert_eq!(vdev_index("xvdA"), None);
        assert_eq!(vdev_index("hda"), None);
        let c = sample(DomainType::Pv);
        let names: Vec<_> = c.disks.iter().map(|d| d.vdev.as_str()).collect();
        assert_eq!(names, ["xvda", "xvdb", "xvdc"]);
    }
}
