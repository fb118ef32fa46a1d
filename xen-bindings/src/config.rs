//! Domain configuration in plain Rust, validated before anything reaches libxl.
use crate::error::XenError;
use libxl_sys as sys;
use std::ffi::CString;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainType {
    Pvh,
    Pv,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSpec {
    /// A file or block device in dom0.
    pub target: PathBuf,
    /// Guest device name: xvda, xvdb, ...
    pub vdev: String,
    pub readonly: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicSpec {
    pub bridge: String,
    /// xx:xx:xx:xx:xx:xx
    pub mac: Option<String>,
}

/// A PV console channel: a named byte stream between dom0 and the guest
/// (docs/guest-protocol.md: hx.stdout, hx.stderr, hx.status, hx.control).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    pub name: String,
    /// A unix socket xenconsoled serves in dom0; None: a pty.
    pub socket: Option<PathBuf>,
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
}

fn cstring(what: &str, s: &str) -> Result<CString, XenError> {
    CString::new(s).map_err(|_| XenError::InvalidConfig(format!("{what} contains a NUL byte")))
}

/// A string libxl may free(): libxl's dispose functions release every char* with free().
fn libxl_str(what: &str, s: &str) -> Result<*mut libc::c_char, XenError> {
    let c = cstring(what, s)?;
    // SAFETY: strdup copies a valid C string into malloc'd memory.
    let p = unsafe { libc::strdup(c.as_ptr()) };
    if p.is_null() {
        return Err(XenError::InvalidConfig("out of memory".into()));
    }
    Ok(p)
}

fn calloc<T>(n: usize) -> *mut T {
    // SAFETY: zeroed memory for n plain C structs; libxl frees it with free().
    unsafe { libc::calloc(n.max(1), std::mem::size_of::<T>()) as *mut T }
}

impl DomainConfig {
    pub fn validate(&self) -> Result<(), XenError> {
        let bad = |m: String| Err(XenError::InvalidConfig(m));
        if self.name.is_empty() || self.name.len() > 64 || !self.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)) {
            return bad(format!("domain name {:?}: 1-64 of [A-Za-z0-9_.-]", self.name));
        }
        if self.memory_mb < 16 {
            return bad(format!("memory {} MiB: at least 16", self.memory_mb));
        }
        if self.vcpus == 0 || self.vcpus > 128 {
            return bad(format!("vcpus {}: 1..128", self.vcpus));
        }
        let mut seen = std::collections::HashSet::new();
        for d in &self.disks {
            let ok = d.vdev.strip_prefix("xvd").is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase()));
            if !ok {
                return bad(format!("disk vdev {:?}: expected xvd[a-z]+", d.vdev));
            }
            if !seen.insert(&d.vdev) {
                return bad(format!("disk vdev {} used twice", d.vdev));
            }
        }
        for n in &self.nics {
            if let Some(m) = &n.mac {
                if parse_mac(m).is_none() {
                    return bad(format!("mac {m:?}: expected xx:xx:xx:xx:xx:xx"));
                }
            }
        }
        let mut names = std::collections::HashSet::new();
        for c in &self.channels {
            if c.name.is_empty() || !names.insert(&c.name) {
                return bad(format!("channel name {:?} empty or repeated", c.name));
            }
        }
        Ok(())
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
            c.on_crash = sys::LIBXL_ACTION_ON_SHUTDOWN_DESTROY;

            c.disks = calloc::<sys::libxl_device_disk>(self.disks.len());
            for (i, d) in self.disks.iter().enumerate() {
                let disk = &mut *c.disks.add(i);
                sys::libxl_device_disk_init(disk);
                c.num_disks = i as i32 + 1;
                disk.pdev_path = libxl_str("disk target", &d.target.to_string_lossy())?;
                disk.vdev = libxl_str("vdev", &d.vdev)?;
                disk.format = sys::LIBXL_DISK_FORMAT_RAW;
                disk.backend = sys::LIBXL_DISK_BACKEND_PHY;
                disk.readwrite = if d.readonly { 0 } else { 1 };
            }
            c.nics = calloc::<sys::libxl_device_nic>(self.nics.len());
            for (i, n) in self.nics.iter().enumerate() {
                let nic = &mut *c.nics.add(i);
                sys::libxl_device_nic_init(nic);
                c.num_nics = i as i32 + 1;
                nic.bridge = libxl_str("bridge", &n.bridge)?;
                if let Some(m) = n.mac.as_deref().and_then(parse_mac) {
                    nic.mac = m;
                }
            }
            c.channels = calloc::<sys::libxl_device_channel>(self.channels.len());
            for (i, ch) in self.channels.iter().enumerate() {
                let dev = &mut *c.channels.add(i);
                sys::libxl_device_channel_init(dev);
                c.num_channels = i as i32 + 1;
                dev.name = libxl_str("channel name", &ch.name)?;
                match &ch.socket {
                    Some(p) => {
                        sys::libxl_device_channel_init_connection(dev, sys::LIBXL_CHANNEL_CONNECTION_SOCKET);
                        dev.u.socket.path = libxl_str("channel socket", &p.to_string_lossy())?;
                    }
                    None => sys::libxl_device_channel_init_connection(dev, sys::LIBXL_CHANNEL_CONNECTION_PTY),
                }
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

impl LibxlConfig {
    fn new() -> Self {
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
        DomainConfig {
            name: "hx-web".into(),
            kind,
            kernel: "/usr/local/lib/hx/vmlinux".into(),
            ramdisk: Some("/var/lib/hx/assets/initramfs.cpio".into()),
            cmdline: "console=hvc0 quiet".into(),
            memory_mb: 128,
            vcpus: 2,
            disks: vec![
                DiskSpec { target: "/var/lib/hx/rootfs/x.erofs".into(), vdev: "xvda".into(), readonly: true },
                DiskSpec { target: "/var/lib/hx/containers/c/config.img".into(), vdev: "xvdb".into(), readonly: true },
                DiskSpec { target: "/var/lib/hx/containers/c/upper.img".into(), vdev: "xvdc".into(), readonly: false },
            ],
            nics: vec![NicSpec { bridge: "hx0".into(), mac: Some("00:16:3e:01:02:03".into()) }],
            channels: vec![Channel { name: "hx.stdout".into(), socket: Some("/run/hx/c/stdout.sock".into()) }, Channel { name: "hx.control".into(), socket: None }],
        }
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
            assert_eq!(CStr::from_ptr(c.b_info.cmdline).to_str().unwrap(), "console=hvc0 quiet");
            assert_eq!(c.num_disks, 3);
            let d0 = &*c.disks;
            assert_eq!(CStr::from_ptr(d0.vdev).to_str().unwrap(), "xvda");
            assert_eq!((d0.readwrite, d0.format, d0.backend), (0, sys::LIBXL_DISK_FORMAT_RAW, sys::LIBXL_DISK_BACKEND_PHY));
            assert_eq!((*c.disks.add(2)).readwrite, 1);
            assert_eq!(c.num_nics, 1);
            assert_eq!((*c.nics).mac, [0x00, 0x16, 0x3e, 1, 2, 3]);
            assert_eq!(c.num_channels, 2);
            assert_eq!((*c.channels).connection, sys::LIBXL_CHANNEL_CONNECTION_SOCKET);
            assert_eq!(CStr::from_ptr((*c.channels).u.socket.path).to_str().unwrap(), "/run/hx/c/stdout.sock");
            assert_eq!((*c.channels.add(1)).connection, sys::LIBXL_CHANNEL_CONNECTION_PTY);
            assert_eq!(c.on_poweroff, sys::LIBXL_ACTION_ON_SHUTDOWN_DESTROY);
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
        assert!(c.to_libxl().err().unwrap().to_string().contains("xvd[a-z]+"));
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
    }
}
