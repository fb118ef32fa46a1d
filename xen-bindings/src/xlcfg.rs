//! xl.cfg domain descriptions for `hx create FILE.cfg`: parsed by libxlutil (the parser xl itself
//! uses, so the syntax is xl's to the byte), read into a validated model (`XlDomain`), which
//! becomes a libxl domain config only in `XlDomain::to_libxl`, like `DomainConfig`.
//!
//! The model covers the keys listed in `SUPPORTED`; keys that would change what the domain is
//! (PCI passthrough, a bootloader, CPU pinning, ...) are refused by name (`UNSUPPORTED`) rather
//! than silently dropped. Other unknown keys are ignored, as xl ignores them.
use crate::config::{parse_mac, LibxlConfig};
use crate::cpuset::CpuSet;
use crate::error::XenError;
use libxl_sys as sys;
use std::ffi::{c_char, c_int, CStr, CString};
use std::path::{Path, PathBuf};

/// The keys `XlDomain` reads (docs/cli.md, `hx create`).
pub const SUPPORTED: &[&str] = &[
    "name",
    "type",
    "memory",
    "maxmem",
    "vcpus",
    "maxvcpus",
    "kernel",
    "ramdisk",
    "cmdline",
    "root",
    "extra",
    "disk",
    "vif",
    "vfb",
    "on_poweroff",
    "on_reboot",
    "on_crash",
];

/// Keys hx does not translate yet and refuses, since dropping them would create another domain
/// than the file describes.
pub const UNSUPPORTED: &[&str] = &[
    "builder",
    "bootloader",
    "bootloader_args",
    "cpus",
    "cpus_soft",
    "pool",
    "pci",
    "dtdev",
    "iomem",
    "ioports",
    "irqs",
    "rdm",
    "vtpm",
    "channel",
    "p9",
    "pvcalls",
    "vnuma",
    "usbctrl",
    "usbdev",
    "vkb",
    "vdispl",
    "vsnd",
    "device_model_override",
    "device_model_stubdomain_override",
    "seclabel",
];

/// Longest config hx reads: xl.cfg files are a few hundred bytes.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XlType {
    Pvh,
    Pv,
    Hvm,
}

/// xl.cfg's `on_poweroff`/`on_reboot`/`on_crash` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownAction {
    Destroy,
    Restart,
    RenameRestart,
    Preserve,
    CoredumpDestroy,
    CoredumpRestart,
    SoftReset,
}

impl ShutdownAction {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "destroy" => Self::Destroy,
            "restart" => Self::Restart,
            "rename-restart" => Self::RenameRestart,
            "preserve" => Self::Preserve,
            "coredump-destroy" => Self::CoredumpDestroy,
            "coredump-restart" => Self::CoredumpRestart,
            "soft-reset" => Self::SoftReset,
            _ => return None,
        })
    }

    fn to_libxl(self) -> sys::libxl_action_on_shutdown {
        match self {
            Self::Destroy => sys::LIBXL_ACTION_ON_SHUTDOWN_DESTROY,
            Self::Restart => sys::LIBXL_ACTION_ON_SHUTDOWN_RESTART,
            Self::RenameRestart => sys::LIBXL_ACTION_ON_SHUTDOWN_RESTART_RENAME,
            Self::Preserve => sys::LIBXL_ACTION_ON_SHUTDOWN_PRESERVE,
            Self::CoredumpDestroy => sys::LIBXL_ACTION_ON_SHUTDOWN_COREDUMP_DESTROY,
            Self::CoredumpRestart => sys::LIBXL_ACTION_ON_SHUTDOWN_COREDUMP_RESTART,
            Self::SoftReset => sys::LIBXL_ACTION_ON_SHUTDOWN_SOFT_RESET,
        }
    }

    /// Whether the domain is started again after this action (xl's monitor does that).
    pub fn restarts(self) -> bool {
        matches!(
            self,
            Self::Restart | Self::RenameRestart | Self::CoredumpRestart
        )
    }

    /// Whether the domain is destroyed (as opposed to kept for inspection).
    pub fn destroys(self) -> bool {
        !matches!(self, Self::Preserve | Self::SoftReset)
    }
}

/// One `disk = [...]` entry, checked by libxlutil's own disk-spec parser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XlDisk {
    /// The spec as written: parsed again into the libxl disk by `to_libxl`.
    pub spec: String,
    pub vdev: String,
    pub target: Option<String>,
    pub readonly: bool,
}

/// One `vif = [...]` entry: xl's `key=value,...` syntax (libxlutil has no parser for it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct XlVif {
    pub mac: Option<[u8; 6]>,
    pub bridge: Option<String>,
    pub ip: Option<String>,
    pub vifname: Option<String>,
    pub script: Option<String>,
    pub model: Option<String>,
    /// `type=ioemu` (Some(true)): an emulated NIC as well as the PV one (HVM); `type=vif`
    /// (Some(false)); None: libxl's default for the domain type, as xl leaves it.
    pub ioemu: Option<bool>,
    /// `rate=...`, checked by libxlutil's rate parser.
    pub rate: Option<String>,
}

/// One `vfb = [...]` entry (a PV framebuffer, with the virtual keyboard xl adds for it), VNC
/// only: xl's `key=value,...` syntax, parsed as xl does (libxlutil has no parser for it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct XlVfb {
    /// `vnc=1`: served by QEMU in dom0 (the domain's device model).
    pub vnc: bool,
    pub listen: Option<String>,
    pub passwd: Option<String>,
    /// `vncdisplay=N`: port 5900 + N.
    pub display: Option<u32>,
    /// `vncunused=0|1`: the first free display from `display` on (libxl's default: yes).
    pub find_unused: Option<bool>,
    pub keymap: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XlDomain {
    pub name: String,
    pub kind: XlType,
    /// None: libxl's default.
    pub memory_mb: Option<u64>,
    pub maxmem_mb: Option<u64>,
    /// None: libxl's default (one vCPU), as xl leaves it.
    pub vcpus: Option<u32>,
    pub maxvcpus: Option<u32>,
    pub kernel: Option<PathBuf>,
    pub ramdisk: Option<PathBuf>,
    /// `cmdline`, else `root=ROOT EXTRA` from `root` and `extra` (xl's rule).
    pub cmdline: Option<String>,
    pub disks: Vec<XlDisk>,
    pub vifs: Vec<XlVif>,
    pub vfbs: Vec<XlVfb>,
    pub on_poweroff: ShutdownAction,
    pub on_reboot: ShutdownAction,
    pub on_crash: ShutdownAction,
}

/// The config text xl parses for `xl create FILE KEY=VALUE...`: the file, then each KEY=VALUE on
/// a line of its own (later assignments win). Every extra must contain `=`.
pub fn with_extra_lines(file: &[u8], extra: &[String]) -> Result<Vec<u8>, XenError> {
    let mut data = file.to_vec();
    if extra.is_empty() {
        return Ok(data);
    }
    data.push(b'\n');
    for e in extra {
        if !e.contains('=') || e.contains('\n') || e.contains('\0') {
            return Err(XenError::InvalidConfig(format!(
                "{e:?}: extra settings are single KEY=VALUE lines"
            )));
        }
        data.extend_from_slice(e.as_bytes());
        data.push(b'\n');
    }
    Ok(data)
}

/// libxlutil's parsed config and where it reports problems (an in-memory stream).
struct Xlu {
    raw: *mut sys::XLU_Config,
    report: *mut sys::FILE,
    buf: Box<(*mut c_char, usize)>,
}

impl Xlu {
    fn new(source: &str) -> Result<Self, XenError> {
        let name = CString::new(source.replace('\0', "?")).expect("no NUL left");
        let mut buf = Box::new((std::ptr::null_mut(), 0usize));
        // SAFETY: open_memstream writes the buffer's address and size into the boxed pair,
        // which stays put until after fclose.
        let report = unsafe { sys::open_memstream(&mut buf.0, &mut buf.1) };
        if report.is_null() {
            return Err(XenError::Setup("open_memstream failed".into()));
        }
        // SAFETY: report stays open until after xlu_cfg_destroy (Drop).
        let raw = unsafe { sys::xlu_cfg_init(report, name.as_ptr()) };
        if raw.is_null() {
            // SAFETY: our stream, closed once; its buffer freed after.
            unsafe {
                sys::fclose(report);
                libc::free(buf.0.cast());
            }
            return Err(XenError::Setup("xlu_cfg_init: out of memory".into()));
        }
        Ok(Xlu { raw, report, buf })
    }

    /// `data` (a config's text; `source` names it in messages) read by libxlutil, bounded.
    fn read(source: &str, data: &[u8]) -> Result<Self, XenError> {
        if data.len() > MAX_CONFIG_BYTES {
            return Err(XenError::InvalidConfig(format!(
                "{source}: larger than {MAX_CONFIG_BYTES} bytes"
            )));
        }
        if data.contains(&0) {
            return Err(XenError::InvalidConfig(format!(
                "{source}: contains NUL bytes"
            )));
        }
        let xlu = Xlu::new(source)?;
        // SAFETY: data and its length; libxlutil copies what it keeps.
        let rc =
            unsafe { sys::xlu_cfg_readdata(xlu.raw, data.as_ptr().cast(), data.len() as c_int) };
        if rc != 0 {
            return Err(xlu.fail(format!("{source}: not valid xl.cfg syntax")));
        }
        Ok(xlu)
    }

    /// What libxlutil reported so far: its last lines, bounded.
    fn report(&self) -> String {
        // SAFETY: fflush updates buf/len; the buffer is valid until the next write or fclose.
        let text = unsafe {
            sys::fflush(self.report);
            if self.buf.0.is_null() {
                return String::new();
            }
            let bytes = std::slice::from_raw_parts(self.buf.0 as *const u8, self.buf.1);
            String::from_utf8_lossy(bytes).into_owned()
        };
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = &lines[lines.len().saturating_sub(3)..];
        tail.iter()
            .map(|l| l.chars().take(300).collect::<String>())
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn fail(&self, what: String) -> XenError {
        let r = self.report();
        XenError::InvalidConfig(if r.is_empty() {
            what
        } else {
            format!("{what}: {r}")
        })
    }

    fn string(&self, key: &str) -> Result<Option<String>, XenError> {
        let k = CString::new(key).expect("static key");
        let mut v: *const c_char = std::ptr::null();
        // SAFETY: valid config; v points into it while it lives, copied at once.
        let rc = unsafe { sys::xlu_cfg_get_string(self.raw, k.as_ptr(), &mut v, 1) };
        match rc {
            0 => Ok(Some(
                unsafe { CStr::from_ptr(v) }.to_string_lossy().into_owned(),
            )),
            libc::ESRCH => Ok(None),
            _ => Err(self.fail(format!("{key}: expected a string"))),
        }
    }

    fn long(&self, key: &str, min: i64, max: i64) -> Result<Option<i64>, XenError> {
        let k = CString::new(key).expect("static key");
        let mut v: libc::c_long = 0;
        // SAFETY: valid config and out pointer.
        let rc = unsafe { sys::xlu_cfg_get_long(self.raw, k.as_ptr(), &mut v, 1) };
        match rc {
            0 if (min..=max).contains(&v) => Ok(Some(v)),
            0 | libc::ERANGE => Err(XenError::InvalidConfig(format!(
                "{key} = {v}: expected {min}..{max}"
            ))),
            libc::ESRCH => Ok(None),
            _ => Err(self.fail(format!("{key}: expected a number"))),
        }
    }

    /// A list of strings; None when the key is absent.
    fn list(&self, key: &str) -> Result<Option<Vec<String>>, XenError> {
        let k = CString::new(key).expect("static key");
        let mut list: *mut sys::XLU_ConfigList = std::ptr::null_mut();
        let mut n: c_int = 0;
        // SAFETY: valid config; the list lives as long as it.
        let rc = unsafe { sys::xlu_cfg_get_list(self.raw, k.as_ptr(), &mut list, &mut n, 1) };
        match rc {
            0 => {}
            libc::ESRCH => return Ok(None),
            _ => return Err(self.fail(format!("{key}: expected a list [ '...', ... ]"))),
        }
        let mut out = Vec::new();
        for i in 0..n {
            // SAFETY: i < n entries.
            let p = unsafe { sys::xlu_cfg_get_listitem(list, i) };
            if p.is_null() {
                return Err(XenError::InvalidConfig(format!(
                    "{key}: item {i} is not a string"
                )));
            }
            out.push(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned());
        }
        Ok(Some(out))
    }

    /// A list of strings; None when the key is absent or not a list (nothing reported).
    fn list_quiet(&self, key: &str) -> Option<Vec<String>> {
        let k = CString::new(key).expect("static key");
        let mut list: *mut sys::XLU_ConfigList = std::ptr::null_mut();
        let mut n: c_int = 0;
        // SAFETY: valid config; dont_warn set; the list lives as long as it.
        let rc = unsafe { sys::xlu_cfg_get_list(self.raw, k.as_ptr(), &mut list, &mut n, 1) };
        if rc != 0 {
            return None;
        }
        (0..n)
            .map(|i| {
                // SAFETY: i < n entries.
                let p = unsafe { sys::xlu_cfg_get_listitem(list, i) };
                (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
            })
            .collect()
    }

    fn defined(&self, key: &str) -> bool {
        let k = CString::new(key).expect("static key");
        let mut v: *const c_char = std::ptr::null();
        let mut list: *mut sys::XLU_ConfigList = std::ptr::null_mut();
        // SAFETY: valid config; dont_warn set, so nothing is reported.
        unsafe {
            sys::xlu_cfg_get_string(self.raw, k.as_ptr(), &mut v, 1) != libc::ESRCH
                || sys::xlu_cfg_get_list(self.raw, k.as_ptr(), &mut list, std::ptr::null_mut(), 1)
                    != libc::ESRCH
        }
    }

    /// Parses one disk spec into `disk` (initialised by the caller).
    fn disk(&self, spec: &str, disk: &mut sys::libxl_device_disk) -> Result<(), XenError> {
        let c = CString::new(spec)
            .map_err(|_| XenError::InvalidConfig("disk spec contains a NUL byte".into()))?;
        let specs = [c.as_ptr()];
        // SAFETY: one valid spec; disk initialised by the caller.
        let rc = unsafe { sys::xlu_disk_parse(self.raw, 1, specs.as_ptr(), disk) };
        if rc != 0 {
            return Err(self.fail(format!("disk {spec:?}")));
        }
        Ok(())
    }
}

impl Drop for Xlu {
    fn drop(&mut self) {
        // SAFETY: destroy before closing the report stream it writes to; buffer freed last.
        unsafe {
            sys::xlu_cfg_destroy(self.raw);
            sys::fclose(self.report);
            libc::free(self.buf.0.cast());
        }
    }
}

/// A libxl disk, disposed on drop (`hx block-attach`'s device).
pub struct Disk(pub(crate) sys::libxl_device_disk);
// SAFETY: owns only malloc'd memory.
unsafe impl Send for Disk {}
impl Disk {
    pub(crate) fn new() -> Self {
        // SAFETY: init on zeroed memory, as libxl requires.
        unsafe {
            let mut d: sys::libxl_device_disk = std::mem::zeroed();
            sys::libxl_device_disk_init(&mut d);
            Disk(d)
        }
    }
}
impl Drop for Disk {
    fn drop(&mut self) {
        // SAFETY: initialised by libxl_device_disk_init.
        unsafe { sys::libxl_device_disk_dispose(&mut self.0) }
    }
}

fn opt_str(p: *const c_char) -> Option<String> {
    // SAFETY: NULL or a C string owned by the struct it came from.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

/// Parses one disk spec with libxlutil: what hx keeps of it (`hx block-attach` too).
pub fn parse_disk(spec: &str) -> Result<XlDisk, XenError> {
    let xlu = Xlu::new("disk spec")?;
    let mut d = Disk::new();
    xlu.disk(spec, &mut d.0)?;
    let vdev = opt_str(d.0.vdev)
        .ok_or_else(|| XenError::InvalidConfig(format!("disk {spec:?}: no vdev")))?;
    Ok(XlDisk {
        spec: spec.to_string(),
        vdev,
        target: opt_str(d.0.pdev_path),
        readonly: d.0.readwrite == 0,
    })
}

/// A disk for `hx block-attach DOMAIN SPEC...`: the specs (xl's disk syntax, several strings
/// for one disk allowed) through libxlutil's parser.
pub fn disk_from_specs(specs: &[String]) -> Result<Disk, XenError> {
    let xlu = Xlu::new("command line")?;
    let c: Vec<CString> = specs
        .iter()
        .map(|s| CString::new(s.as_str()))
        .collect::<Result<_, _>>()
        .map_err(|_| XenError::InvalidConfig("disk spec contains a NUL byte".into()))?;
    let ptrs: Vec<*const c_char> = c.iter().map(|s| s.as_ptr()).collect();
    let mut d = Disk::new();
    // SAFETY: valid specs; the disk initialised.
    let rc = unsafe { sys::xlu_disk_parse(xlu.raw, ptrs.len() as c_int, ptrs.as_ptr(), &mut d.0) };
    if rc != 0 || d.0.vdev.is_null() {
        return Err(xlu.fail(format!("disk {:?}", specs.join(" "))));
    }
    Ok(d)
}

/// A disk hx builds itself (a pod member's, hot-plugged): `spec` raw behind blkback, `script` its
/// hotplug script (libxl's `block` when None).
pub fn disk_from_spec(
    spec: &crate::config::DiskSpec,
    script: Option<&std::path::Path>,
) -> Result<Disk, XenError> {
    let mut d = Disk::new();
    // SAFETY: d was initialised by Disk::new and owns the strings fill_disk allocates.
    unsafe { crate::config::fill_disk(&mut d.0, spec, script)? };
    Ok(d)
}

/// A libxl nic, disposed on drop (`hx network-attach`'s device).
pub struct Nic(pub(crate) sys::libxl_device_nic);
// SAFETY: owns only malloc'd memory.
unsafe impl Send for Nic {}
impl Drop for Nic {
    fn drop(&mut self) {
        // SAFETY: initialised by libxl_device_nic_init.
        unsafe { sys::libxl_device_nic_dispose(&mut self.0) }
    }
}

/// A nic for `hx network-attach DOMAIN KEY=VALUE...` (xl's vif keys); libxl picks its devid.
pub fn nic_from_vif(v: &XlVif) -> Result<Nic, XenError> {
    // SAFETY: init on zeroed memory.
    let mut n = unsafe {
        let mut n: sys::libxl_device_nic = std::mem::zeroed();
        sys::libxl_device_nic_init(&mut n);
        Nic(n)
    };
    fill_nic(&mut n.0, v, None)?;
    Ok(n)
}

/// A nic from the validated model (a warm domain's vif, hot-plugged at its take).
pub fn nic_from_spec(spec: &crate::config::NicSpec) -> Result<Nic, XenError> {
    // SAFETY: init on zeroed memory; fill_nic_spec sets strings the Nic then owns.
    unsafe {
        let mut n: sys::libxl_device_nic = std::mem::zeroed();
        sys::libxl_device_nic_init(&mut n);
        let mut n = Nic(n);
        crate::config::fill_nic_spec(&mut n.0, spec)?;
        Ok(n)
    }
}

/// Parses one vif spec (`mac=..,bridge=..,ip=..`) as xl does, strictly: unknown keys are refused.
pub fn parse_vif(spec: &str) -> Result<XlVif, XenError> {
    let bad = |m: String| XenError::InvalidConfig(format!("vif {spec:?}: {m}"));
    let mut v = XlVif::default();
    for kv in key_values(spec) {
        let (k, val) = kv.map_err(bad)?;
        let s = Some(val.to_string());
        match k {
            "mac" => {
                let m = parse_mac(val).ok_or_else(|| bad(format!("mac {val:?}")))?;
                if m[0] & 1 == 1 {
                    return Err(bad(format!("mac {val}: multicast")));
                }
                v.mac = Some(m);
            }
            "bridge" => {
                if val.len() > 15 || val.contains(['/', ' ']) {
                    return Err(bad(format!("bridge {val:?}: an interface name")));
                }
                v.bridge = s;
            }
            "ip" => v.ip = s,
            "vifname" => {
                if val.len() > 15 || val.contains(['/', ' ']) {
                    return Err(bad(format!("vifname {val:?}: at most 15 characters")));
                }
                v.vifname = s;
            }
            "script" => v.script = s,
            "model" => v.model = s,
            "type" => match val {
                "vif" => v.ioemu = Some(false),
                "ioemu" => v.ioemu = Some(true),
                _ => return Err(bad(format!("type {val:?}: vif or ioemu"))),
            },
            "backend" if val == "0" || val == "Domain-0" => {}
            "rate" => v.rate = s,
            _ => return Err(bad(format!("unsupported parameter {k:?}"))),
        }
    }
    if let Some(r) = &v.rate {
        check_rate(r).map_err(|e| bad(e.to_string()))?;
    }
    Ok(v)
}

fn check_rate(rate: &str) -> Result<(), XenError> {
    let xlu = Xlu::new("vif rate")?;
    let c = CString::new(rate).map_err(|_| XenError::InvalidConfig("rate: NUL".into()))?;
    // SAFETY: a nic initialised and disposed around the parse.
    unsafe {
        let mut nic: sys::libxl_device_nic = std::mem::zeroed();
        sys::libxl_device_nic_init(&mut nic);
        let rc = sys::xlu_vif_parse_rate(xlu.raw, c.as_ptr(), &mut nic);
        sys::libxl_device_nic_dispose(&mut nic);
        if rc != 0 {
            return Err(xlu.fail(format!("rate {rate:?}")));
        }
    }
    Ok(())
}

impl XlDomain {
    /// Parses `data` (the config text; `source` names it in messages) with libxlutil.
    pub fn parse(source: &str, data: &[u8]) -> Result<Self, XenError> {
        let xlu = Xlu::read(source, data)?;
        for key in UNSUPPORTED {
            if xlu.defined(key) {
                return Err(XenError::InvalidConfig(format!(
                    "{source}: {key:?} is not supported by hx create yet (docs/cli.md)"
                )));
            }
        }
        let name = xlu.string("name")?.ok_or_else(|| {
            XenError::InvalidConfig(format!("{source}: no domain name (name = \"...\")"))
        })?;
        let kind = match xlu.string("type")?.as_deref() {
            Some("pvh") => XlType::Pvh,
            Some("pv") | None => XlType::Pv,
            Some("hvm") => XlType::Hvm,
            Some(t) => {
                return Err(XenError::InvalidConfig(format!(
                    "{source}: type {t:?}: pvh, pv or hvm"
                )))
            }
        };
        let mb = |k| xlu.long(k, 1, 1 << 24).map(|v| v.map(|v| v as u64));
        let memory_mb = mb("memory")?;
        let maxmem_mb = mb("maxmem")?;
        let vcpus = xlu.long("vcpus", 1, 512)?.map(|v| v as u32);
        let maxvcpus = xlu.long("maxvcpus", 1, 512)?.map(|v| v as u32);
        let path = |k| xlu.string(k).map(|v| v.map(PathBuf::from));
        let kernel = path("kernel")?;
        let ramdisk = path("ramdisk")?;
        let cmdline = match (
            xlu.string("cmdline")?,
            xlu.string("root")?,
            xlu.string("extra")?,
        ) {
            (Some(c), _, _) => Some(c),
            (None, Some(r), Some(e)) => Some(format!("root={r} {e}")),
            (None, Some(r), None) => Some(format!("root={r}")),
            (None, None, e) => e,
        };
        let disks = xlu
            .list("disk")?
            .unwrap_or_default()
            .iter()
            .map(|s| parse_disk(s))
            .collect::<Result<Vec<_>, _>>()?;
        let vifs = xlu
            .list("vif")?
            .unwrap_or_default()
            .iter()
            .map(|s| parse_vif(s))
            .collect::<Result<Vec<_>, _>>()?;
        let vfbs = xlu
            .list("vfb")?
            .unwrap_or_default()
            .iter()
            .map(|s| parse_vfb(s))
            .collect::<Result<Vec<_>, _>>()?;
        let action = |k: &str, default| -> Result<ShutdownAction, XenError> {
            match xlu.string(k)? {
                None => Ok(default),
                Some(v) => ShutdownAction::parse(&v).ok_or_else(|| {
                    XenError::InvalidConfig(format!("{source}: unknown {k} action {v:?}"))
                }),
            }
        };
        let d = XlDomain {
            name,
            kind,
            memory_mb,
            maxmem_mb,
            vcpus,
            maxvcpus,
            kernel,
            ramdisk,
            cmdline,
            disks,
            vifs,
            vfbs,
            on_poweroff: action("on_poweroff", ShutdownAction::Destroy)?,
            on_reboot: action("on_reboot", ShutdownAction::Restart)?,
            on_crash: action("on_crash", ShutdownAction::Destroy)?,
        };
        d.validate().map_err(|e| match e {
            XenError::InvalidConfig(m) => XenError::InvalidConfig(format!("{source}: {m}")),
            e => e,
        })?;
        Ok(d)
    }

    pub fn validate(&self) -> Result<(), XenError> {
        let bad = |m: String| Err(XenError::InvalidConfig(m));
        let n = &self.name;
        if n.is_empty()
            || n.len() > 64
            || n.bytes().any(|b| !b.is_ascii_graphic() || b == b'/')
            || n.bytes().all(|b| b.is_ascii_digit())
        {
            return bad(format!(
                "domain name {n:?}: 1-64 printable characters, no '/', not all digits"
            ));
        }
        if self.kind != XlType::Hvm && self.kernel.is_none() {
            return bad(
                "kernel: a PV or PVH domain needs one (bootloaders are not supported)".into(),
            );
        }
        if let (Some(m), Some(max)) = (self.memory_mb, self.maxmem_mb) {
            if max < m {
                return bad(format!("maxmem {max} is below memory {m}"));
            }
        }
        if let (Some(max), Some(n)) = (self.maxvcpus, self.vcpus) {
            if max < n {
                return bad(format!("maxvcpus {max} is below vcpus {n}"));
            }
        }
        if self.cmdline.as_ref().is_some_and(|c| c.len() >= 2048) {
            return bad("kernel command line: longer than 2047 bytes".into());
        }
        if self.kind == XlType::Hvm && !self.vfbs.is_empty() {
            return bad("vfb: a PV or PVH domain's framebuffer, not an HVM one's".into());
        }
        let mut seen = std::collections::HashSet::new();
        for d in &self.disks {
            if !seen.insert(&d.vdev) {
                return bad(format!("disk vdev {} used twice", d.vdev));
            }
        }
        Ok(())
    }

    pub fn restarts_on(&self) -> [ShutdownAction; 3] {
        [self.on_poweroff, self.on_reboot, self.on_crash]
    }

    /// The libxl form: libxl owns its strings and arrays (freed by dispose).
    pub fn to_libxl(&self) -> Result<LibxlConfig, XenError> {
        self.validate()?;
        let s = |what: &str, v: &str| crate::config::libxl_str(what, v);
        let mut cfg = LibxlConfig::new();
        let c = &mut cfg.inner;
        let xlu = Xlu::new("disk spec")?;
        // SAFETY: c initialised by libxl_domain_config_init; everything stored is malloc'd.
        unsafe {
            let kind = match self.kind {
                XlType::Pvh => sys::LIBXL_DOMAIN_TYPE_PVH,
                XlType::Pv => sys::LIBXL_DOMAIN_TYPE_PV,
                XlType::Hvm => sys::LIBXL_DOMAIN_TYPE_HVM,
            };
            c.c_info.type_ = kind;
            c.c_info.name = s("name", &self.name)?;
            sys::libxl_uuid_generate(&mut c.c_info.uuid);
            sys::libxl_defbool_set(&mut c.c_info.run_hotplug_scripts, true);
            sys::libxl_domain_build_info_init_type(&mut c.b_info, kind);
            if let Some(m) = self.memory_mb {
                c.b_info.target_memkb = m * 1024;
                c.b_info.max_memkb = self.maxmem_mb.unwrap_or(m) * 1024;
            } else if let Some(max) = self.maxmem_mb {
                c.b_info.max_memkb = max * 1024;
            }
            // As xl's parse_config_data: max_vcpus is maxvcpus, else vcpus, else libxl's
            // default; avail_vcpus (vCPUs 0..vcpus online at boot, a bitmap libxl frees with
            // free()) only when vcpus is given.
            c.b_info.max_vcpus = self.maxvcpus.or(self.vcpus).unwrap_or(0) as c_int;
            if let Some(n) = self.vcpus {
                let bytes = (n as usize).div_ceil(8);
                let map = crate::config::calloc::<u8>(bytes);
                for i in 0..n as usize {
                    *map.add(i / 8) |= 1 << (i % 8);
                }
                c.b_info.avail_vcpus.size = bytes as u32;
                c.b_info.avail_vcpus.map = map;
            }
            // xl's built-in default (xl.conf's claim_mode=1).
            sys::libxl_defbool_set(&mut c.b_info.claim_mode, true);
            if let Some(k) = &self.kernel {
                c.b_info.kernel = s("kernel", &k.to_string_lossy())?;
            }
            if let Some(r) = &self.ramdisk {
                c.b_info.ramdisk = s("ramdisk", &r.to_string_lossy())?;
            }
            if let Some(l) = &self.cmdline {
                c.b_info.cmdline = s("cmdline", l)?;
            }
            c.on_poweroff = self.on_poweroff.to_libxl();
            c.on_reboot = self.on_reboot.to_libxl();
            c.on_crash = self.on_crash.to_libxl();
            c.on_watchdog = sys::LIBXL_ACTION_ON_SHUTDOWN_DESTROY;
            c.on_soft_reset = sys::LIBXL_ACTION_ON_SHUTDOWN_SOFT_RESET;

            c.disks = crate::config::calloc::<sys::libxl_device_disk>(self.disks.len());
            for (i, d) in self.disks.iter().enumerate() {
                let disk = &mut *c.disks.add(i);
                sys::libxl_device_disk_init(disk);
                c.num_disks = i as c_int + 1;
                xlu.disk(&d.spec, disk)?;
            }
            c.nics = crate::config::calloc::<sys::libxl_device_nic>(self.vifs.len());
            for (i, v) in self.vifs.iter().enumerate() {
                let nic = &mut *c.nics.add(i);
                sys::libxl_device_nic_init(nic);
                c.num_nics = i as c_int + 1;
                fill_nic(nic, v, Some(i))?;
            }
            // As xl: a virtual keyboard beside each framebuffer, both numbered by position.
            c.vfbs = crate::config::calloc::<sys::libxl_device_vfb>(self.vfbs.len());
            c.vkbs = crate::config::calloc::<sys::libxl_device_vkb>(self.vfbs.len());
            for (i, f) in self.vfbs.iter().enumerate() {
                let vfb = &mut *c.vfbs.add(i);
                sys::libxl_device_vfb_init(vfb);
                c.num_vfbs = i as c_int + 1;
                let vkb = &mut *c.vkbs.add(i);
                sys::libxl_device_vkb_init(vkb);
                c.num_vkbs = i as c_int + 1;
                vfb.devid = i as c_int;
                vkb.devid = i as c_int;
                sys::libxl_defbool_set(&mut vfb.vnc.enable, f.vnc);
                if let Some(l) = &f.listen {
                    vfb.vnc.listen = s("vnclisten", l)?;
                }
                if let Some(p) = &f.passwd {
                    vfb.vnc.passwd = s("vncpasswd", p)?;
                }
                if let Some(d) = f.display {
                    vfb.vnc.display = d as c_int;
                }
                if let Some(u) = f.find_unused {
                    sys::libxl_defbool_set(&mut vfb.vnc.findunused, u);
                }
                if let Some(k) = &f.keymap {
                    vfb.keymap = s("keymap", k)?;
                }
            }
        }
        Ok(cfg)
    }
}

/// xl's `key=value,key=value` device spec (vif, vfb): the pairs in order, blanks around items
/// dropped; each value non-empty, at most 255 bytes, without control characters. Lazy, so the
/// first bad item or bad key, whichever comes first, is the one reported.
fn key_values(spec: &str) -> impl Iterator<Item = Result<(&str, &str), String>> {
    spec.split(',')
        .map(|item| item.trim_matches(|c: char| c == ' ' || c == '\t'))
        .filter(|item| !item.is_empty())
        .map(|item| {
            let (k, val) = item
                .split_once('=')
                .ok_or_else(|| format!("{item:?} is not key=value"))?;
            if val.is_empty() || val.len() > 255 || val.bytes().any(|b| b.is_ascii_control()) {
                return Err(format!("{k}: empty, too long or with control characters"));
            }
            Ok((k, val))
        })
}

/// One `vfb = [...]` entry. xl reads the numbers with atoi; here they are whole numbers or
/// refused, and keys hx does not carry out (SDL's) are refused rather than dropped.
pub fn parse_vfb(spec: &str) -> Result<XlVfb, XenError> {
    let bad = |m: String| XenError::InvalidConfig(format!("vfb {spec:?}: {m}"));
    let mut f = XlVfb::default();
    for kv in key_values(spec) {
        let (k, val) = kv.map_err(bad)?;
        let flag = || match val {
            "0" => Ok(false),
            "1" => Ok(true),
            _ => Err(bad(format!("{k}={val}: 0 or 1"))),
        };
        match k {
            "vnc" => f.vnc = flag()?,
            "vncunused" => f.find_unused = Some(flag()?),
            "vnclisten" => f.listen = Some(val.to_string()),
            "vncpasswd" => f.passwd = Some(val.to_string()),
            "vncdisplay" => {
                f.display = Some(
                    val.parse::<u32>()
                        .ok()
                        .filter(|d| *d <= 65535 - 5900)
                        .ok_or_else(|| bad(format!("vncdisplay {val:?}: 0 to {}", 65535 - 5900)))?,
                )
            }
            "keymap" => f.keymap = Some(val.to_string()),
            _ => return Err(bad(format!("unsupported parameter {k:?}"))),
        }
    }
    Ok(f)
}

/// Fills an initialised libxl nic from a vif spec; `devid` is its index (xl numbers them so), or
/// None for libxl to pick one.
pub(crate) fn fill_nic(
    nic: &mut sys::libxl_device_nic,
    v: &XlVif,
    devid: Option<usize>,
) -> Result<(), XenError> {
    let s = |what: &str, x: &str| crate::config::libxl_str(what, x);
    nic.devid = devid.map_or(-1, |d| d as c_int);
    nic.backend_domid = 0;
    if let Some(m) = v.mac {
        nic.mac = m;
    }
    if let Some(b) = &v.bridge {
        nic.bridge = s("bridge", b)?;
    }
    if let Some(ip) = &v.ip {
        nic.ip = s("ip", ip)?;
    }
    if let Some(n) = &v.vifname {
        nic.ifname = s("vifname", n)?;
    }
    if let Some(sc) = &v.script {
        nic.script = s("script", sc)?;
    }
    if let Some(m) = &v.model {
        nic.model = s("model", m)?;
    }
    match v.ioemu {
        Some(true) => nic.nictype = sys::LIBXL_NIC_TYPE_VIF_IOEMU,
        Some(false) => nic.nictype = sys::LIBXL_NIC_TYPE_VIF,
        None => {}
    }
    if let Some(r) = &v.rate {
        let xlu = Xlu::new("vif rate")?;
        let c =
            CString::new(r.as_str()).map_err(|_| XenError::InvalidConfig("rate: NUL".into()))?;
        // SAFETY: valid config and an initialised nic.
        if unsafe { sys::xlu_vif_parse_rate(xlu.raw, c.as_ptr(), nic) } != 0 {
            return Err(xlu.fail(format!("rate {r:?}")));
        }
    }
    Ok(())
}

/// A cpupool config (xlcpupool.cfg(5), `xl cpupool-create`): the pool's name (else the
/// file's base name), its scheduler (None: the host's default) and its CPUs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XlCpupool {
    pub name: String,
    pub sched: Option<String>,
    pub cpus: PoolCpus,
}

/// Which CPUs a new pool gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolCpus {
    /// None: a pool without CPUs (add them with cpupool-cpu-add).
    None,
    /// `cpus = ["1", "2"]` or `cpus = "1-2"`.
    Cpus(CpuSet),
    /// `nodes = ["0"]`: every free CPU of these NUMA nodes.
    Nodes(Vec<u32>),
}

impl XlCpupool {
    /// Parses `data` (`source` names it in messages; `file` is the config file's path, whose
    /// base name is the pool's name when the config gives none) with libxlutil.
    pub fn parse(source: &str, data: &[u8], file: Option<&Path>) -> Result<Self, XenError> {
        let xlu = Xlu::read(source, data)?;
        let name = match xlu.string("name")? {
            Some(n) => n,
            None => match file.and_then(|f| f.file_name()) {
                Some(f) => f.to_string_lossy().into_owned(),
                None => return Err(XenError::InvalidConfig("Missing cpupool name!".into())),
            },
        };
        if name.is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
            return Err(XenError::InvalidConfig(format!(
                "{source}: cpupool name {name:?}: 1 to 255 printable characters"
            )));
        }
        let sched = xlu.string("sched")?;
        let number = |key: &str, item: &str| -> Result<u32, XenError> {
            item.parse::<u32>()
                .ok()
                .filter(|n| *n <= crate::cpuset::MAX_CPU && !item.starts_with('+'))
                .ok_or_else(|| {
                    XenError::InvalidConfig(format!("{source}: {key}: {item:?} is not a number"))
                })
        };
        let cpus = if let Some(nodes) = xlu.list("nodes")? {
            PoolCpus::Nodes(
                nodes
                    .iter()
                    .map(|n| number("nodes", n))
                    .collect::<Result<_, _>>()?,
            )
        } else if xlu.defined("cpus") {
            match xlu.list_quiet("cpus") {
                Some(list) => PoolCpus::Cpus(CpuSet(
                    list.iter()
                        .map(|c| number("cpus", c))
                        .collect::<Result<_, _>>()?,
                )),
                None => {
                    let range = xlu.string("cpus")?.unwrap_or_default();
                    PoolCpus::Cpus(CpuSet::parse(&range, crate::cpuset::MAX_CPU + 1)?)
                }
            }
        } else {
            PoolCpus::None
        };
        Ok(XlCpupool { name, sched, cpus })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BASIC: &str = r#"
# an ordinary PVH guest
name = "web1"
type = "pvh"
kernel = "/usr/local/lib/hx/vmlinux"
ramdisk = "/root/busybox.cpio.gz"
extra = "console=hvc0 quiet"
memory = 128
maxmem = 256
vcpus = 2
disk = [ 'format=raw, vdev=xvda, access=rw, target=/root/d.img', '/root/ro.img,raw,xvdb,r' ]
vif = [ 'mac=00:16:3e:00:00:01,bridge=xenbr0', '' ]
on_poweroff = "destroy"
on_reboot = "destroy"
on_crash = "preserve"
"#;

    #[test]
    fn reads_an_ordinary_pvh_config() {
        let d = XlDomain::parse("web1.cfg", BASIC.as_bytes()).unwrap();
        assert_eq!(d.name, "web1");
        assert_eq!(d.kind, XlType::Pvh);
        assert_eq!(
            (d.memory_mb, d.maxmem_mb, d.vcpus),
            (Some(128), Some(256), Some(2))
        );
        assert_eq!(d.cmdline.as_deref(), Some("console=hvc0 quiet"));
        assert_eq!(d.disks.len(), 2);
        assert_eq!(d.disks[0].vdev, "xvda");
        assert_eq!(d.disks[0].target.as_deref(), Some("/root/d.img"));
        assert!(!d.disks[0].readonly);
        assert!(d.disks[1].readonly);
        assert_eq!(d.vifs.len(), 2);
        assert_eq!(d.vifs[0].bridge.as_deref(), Some("xenbr0"));
        assert_eq!(d.vifs[1], XlVif::default());
        assert_eq!(d.on_crash, ShutdownAction::Preserve);
        assert_eq!(d.on_reboot, ShutdownAction::Destroy);
    }

    #[test]
    fn reaches_libxl_structures() {
        let d = XlDomain::parse("web1.cfg", BASIC.as_bytes()).unwrap();
        let cfg = d.to_libxl().unwrap();
        let c = cfg.raw();
        // SAFETY: reading back what to_libxl stored.
        unsafe {
            assert_eq!(c.c_info.type_, sys::LIBXL_DOMAIN_TYPE_PVH);
            assert_eq!(CStr::from_ptr(c.c_info.name).to_str().unwrap(), "web1");
            assert_eq!(
                (c.b_info.target_memkb, c.b_info.max_memkb),
                (128 << 10, 256 << 10)
            );
            assert_eq!(c.b_info.max_vcpus, 2);
            assert_eq!(*c.b_info.avail_vcpus.map, 0b11);
            assert_eq!(c.num_disks, 2);
            let d0 = &*c.disks;
            assert_eq!(CStr::from_ptr(d0.vdev).to_str().unwrap(), "xvda");
            assert_eq!(
                CStr::from_ptr(d0.pdev_path).to_str().unwrap(),
                "/root/d.img"
            );
            assert_eq!(d0.format, sys::LIBXL_DISK_FORMAT_RAW);
            assert_eq!(d0.readwrite, 1);
            assert_eq!((*c.disks.add(1)).readwrite, 0);
            assert_eq!(c.num_nics, 2);
            assert_eq!((*c.nics).mac, [0, 0x16, 0x3e, 0, 0, 1]);
            assert_eq!((*c.nics.add(1)).devid, 1);
            assert_eq!(c.on_crash, sys::LIBXL_ACTION_ON_SHUTDOWN_PRESERVE);
            assert_eq!(
                CStr::from_ptr(c.b_info.cmdline).to_str().unwrap(),
                "console=hvc0 quiet"
            );
        }
    }

    /// What `hx create -n` prints: libxl's JSON of the config, with the fields xl's
    /// parse_config_data sets for these keys and no others.
    #[test]
    fn json_matches_xls_defaults() {
        let json = |text: &str| {
            let d = XlDomain::parse("x.cfg", text.as_bytes()).unwrap();
            crate::context::saverestore::config_json_for_test(&mut d.to_libxl().unwrap())
        };
        let j = json("name=\"a\"\ntype=\"pvh\"\nkernel=\"/k\"\nmemory=64\n");
        for want in [
            "\"name\": \"a\"",
            "\"type\": \"pvh\"",
            "\"claim_mode\": \"True\"",
            "\"max_memkb\": 65536",
            "\"target_memkb\": 65536",
            "\"on_reboot\": \"restart\"",
            "\"on_soft_reset\": \"soft_reset\"",
            "\"kernel\": \"/k\"",
        ] {
            assert!(j.contains(want), "{want} in {j}");
        }
        assert!(
            !j.contains("max_vcpus") && !j.contains("avail_vcpus"),
            "{j}"
        );
        // A vif without type= leaves nictype to libxl (xl sets it only from type=).
        let j = json("name=\"a\"\nkernel=\"/k\"\nvif=['bridge=hx0']\n");
        assert!(j.contains("\"devid\": 0") && !j.contains("nictype"), "{j}");
        let j = json("name=\"a\"\nkernel=\"/k\"\nvif=['bridge=hx0,type=vif']\n");
        assert!(j.contains("\"nictype\": \"vif\""), "{j}");
        let j = json("name=\"a\"\nkernel=\"/k\"\nvcpus=2\n");
        assert!(j.contains("\"max_vcpus\": 2"), "{j}");
        assert!(j.contains("\"avail_vcpus\": [\n"), "{j}");
    }

    #[test]
    fn root_and_extra_make_the_command_line_like_xl() {
        let base = "name=\"a\"\nkernel=\"/k\"\n";
        let parse = |more: &str| {
            XlDomain::parse("x", format!("{base}{more}").as_bytes())
                .unwrap()
                .cmdline
        };
        assert_eq!(
            parse("root=\"/dev/xvda\"\nextra=\"ro\"\n").unwrap(),
            "root=/dev/xvda ro"
        );
        assert_eq!(parse("root=\"/dev/xvda\"\n").unwrap(), "root=/dev/xvda");
        assert_eq!(parse("cmdline=\"x\"\nextra=\"y\"\n").unwrap(), "x");
        assert_eq!(parse(""), None);
    }

    #[test]
    fn bad_configs_name_the_culprit() {
        let base = "name=\"a\"\nkernel=\"/k\"\n";
        for (more, want) in [
            ("type=\"xen\"\n", "type \"xen\""),
            ("memory=\"lots\"\n", "memory"),
            ("memory=0\n", "memory = 0"),
            ("disk=['/x,raw,xvda,bogus']\n", "disk"),
            ("vif=['colour=blue']\n", "unsupported parameter \"colour\""),
            ("vif=['mac=01:00:00:00:00:01']\n", "multicast"),
            ("pci=['01:00.0']\n", "\"pci\" is not supported"),
            ("on_reboot=\"explode\"\n", "unknown on_reboot action"),
            ("name = \n", "not valid xl.cfg syntax"),
            ("vcpus=4\nmaxvcpus=2\n", "maxvcpus 2 is below vcpus 4"),
        ] {
            let e = XlDomain::parse("t.cfg", format!("{base}{more}").as_bytes())
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{more:?}: {e}");
        }
        let e = XlDomain::parse("t.cfg", b"kernel=\"/k\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no domain name"), "{e}");
        let e = XlDomain::parse("t.cfg", b"name=\"a\"\ntype=\"pvh\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("kernel"), "{e}");
    }

    #[test]
    fn attach_specs() {
        let d = disk_from_specs(&["format=raw,vdev=xvdz,access=ro,target=/x.img".into()]).unwrap();
        // SAFETY: reading what libxlutil stored.
        unsafe {
            assert_eq!(CStr::from_ptr(d.0.vdev).to_str().unwrap(), "xvdz");
            assert_eq!(d.0.readwrite, 0);
        }
        let d =
            disk_from_specs(&["/x.img".into(), "raw".into(), "xvdy".into(), "w".into()]).unwrap();
        assert_eq!(d.0.readwrite, 1);
        assert!(disk_from_specs(&["target=/x.img,bogus=1".into()]).is_err());
        let n = nic_from_vif(&parse_vif("bridge=hx0,mac=00:16:3e:0a:0b:0c").unwrap()).unwrap();
        assert_eq!((n.0.devid, n.0.mac), (-1, [0, 0x16, 0x3e, 0xa, 0xb, 0xc]));
    }

    #[test]
    fn a_vfb_becomes_a_vnc_framebuffer_and_a_keyboard() {
        let cfg = b"name=\"v\"\ntype=\"pv\"\nkernel=\"/k\"\nvfb=['vnc=1, vnclisten=127.0.0.1,vncdisplay=3,vncunused=0,vncpasswd=s3cret,keymap=de']\n";
        let d = XlDomain::parse("v.cfg", cfg).unwrap();
        assert_eq!(
            d.vfbs,
            [XlVfb {
                vnc: true,
                listen: Some("127.0.0.1".into()),
                passwd: Some("s3cret".into()),
                display: Some(3),
                find_unused: Some(false),
                keymap: Some("de".into()),
            }]
        );
        let cfg = d.to_libxl().unwrap();
        let c = &cfg.inner;
        // SAFETY: reading what to_libxl stored.
        unsafe {
            assert_eq!((c.num_vfbs, c.num_vkbs), (1, 1));
            let vfb = &*c.vfbs;
            assert!(sys::libxl_defbool_val(vfb.vnc.enable));
            assert!(!sys::libxl_defbool_val(vfb.vnc.findunused));
            assert_eq!(vfb.vnc.display, 3);
            assert_eq!(
                CStr::from_ptr(vfb.vnc.listen).to_str().unwrap(),
                "127.0.0.1"
            );
            assert_eq!(CStr::from_ptr(vfb.vnc.passwd).to_str().unwrap(), "s3cret");
            assert_eq!(CStr::from_ptr(vfb.keymap).to_str().unwrap(), "de");
        }
        for (spec, why) in [
            ("vnc=yes", "0 or 1"),
            ("sdl=1", "unsupported parameter"),
            ("vncdisplay=-1", "vncdisplay"),
            ("vncdisplay=70000", "vncdisplay"),
            ("vnc", "not key=value"),
        ] {
            let e = parse_vfb(spec).unwrap_err().to_string();
            assert!(e.contains(why), "{spec}: {e}");
        }
        // A framebuffer on HVM is refused, not dropped.
        let e = XlDomain::parse("h.cfg", b"name=\"h\"\ntype=\"hvm\"\nvfb=['vnc=1']\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not an HVM"), "{e}");
    }

    #[test]
    fn extra_lines_override_the_file() {
        let file = b"name=\"a\"\nkernel=\"/k\"\nmemory=64";
        let data = with_extra_lines(file, &["memory=96".into(), "name=\"b\"".into()]).unwrap();
        let d = XlDomain::parse("x", &data).unwrap();
        assert_eq!((d.name.as_str(), d.memory_mb), ("b", Some(96)));
        assert!(with_extra_lines(file, &["memory".into()]).is_err());
        assert!(with_extra_lines(file, &["a=1\nb=2".into()]).is_err());
    }

    #[test]
    fn cpupool_configs_as_xl_reads_them() {
        let p = |text: &str| XlCpupool::parse("t", text.as_bytes(), None);
        let set = |v: &[u32]| PoolCpus::Cpus(CpuSet(v.iter().copied().collect()));
        let c = p("name=\"p1\"\nsched=\"credit\"\ncpus=[\"1\",\"3\"]\n").unwrap();
        assert_eq!(
            (c.name.as_str(), c.sched.as_deref(), c.cpus),
            ("p1", Some("credit"), set(&[1, 3]))
        );
        assert_eq!(p("name='a'\ncpus=\"1-3,^2\"").unwrap().cpus, set(&[1, 3]));
        assert_eq!(
            p("name='a'\nnodes=[\"0\"]").unwrap().cpus,
            PoolCpus::Nodes(vec![0])
        );
        let bare = p("name='a'").unwrap();
        assert_eq!((bare.sched, bare.cpus), (None, PoolCpus::None));
        // The file's base name when the config has none; else xl's error.
        let f = XlCpupool::parse("t", b"cpus=\"1\"", Some(Path::new("/etc/xen/pool7"))).unwrap();
        assert_eq!(f.name, "pool7");
        assert!(p("cpus=\"1\"")
            .unwrap_err()
            .to_string()
            .contains("Missing cpupool name"));
        for bad in [
            "name='a'\ncpus=[\"x\"]",
            "name='a'\ncpus=[\"+1\"]",
            "name='a'\ncpus=\"9999999\"",
            "name='a'\nnodes=\"0\"",
            "name=",
            "name=''",
        ] {
            assert!(p(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        /// Whatever bytes a config holds, libxlutil and the model answer with a value or an
        /// error, never a crash.
        #[test]
        fn any_bytes_parse_or_fail_cleanly(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = XlDomain::parse("fuzz", &data);
            let _ = XlCpupool::parse("fuzz", &data, None);
        }

        /// A KEY=VALUE appended on the command line wins over the file, as with xl.
        #[test]
        fn extra_settings_win(mem in 16u64..100_000, name in "[a-z][a-z0-9_-]{0,20}") {
            let file = b"name=\"orig\"\nkernel=\"/k\"\nmemory=32\n";
            let data = with_extra_lines(file, &[format!("memory={mem}"), format!("name=\"{name}\"")]).unwrap();
            let d = XlDomain::parse("x", &data).unwrap();
            prop_assert_eq!(d.memory_mb, Some(mem));
            prop_assert_eq!(d.name, name);
        }

        /// The vif parser: known keys round-trip, anything else is an error, never a panic.
        #[test]
        fn vif_specs(mac in proptest::array::uniform6(any::<u8>()), bridge in "[a-z][a-z0-9]{0,10}", junk in ".{0,40}") {
            let m = format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", mac[0] & 0xfe, mac[1], mac[2], mac[3], mac[4], mac[5]);
            let v = parse_vif(&format!("mac={m}, bridge={bridge}")).unwrap();
            prop_assert_eq!(v.bridge.as_deref(), Some(bridge.as_str()));
            prop_assert_eq!(v.mac.unwrap()[1], mac[1]);
            let _ = parse_vif(&junk);
        }

        /// The vfb parser: known keys round-trip, anything else is an error, never a panic.
        #[test]
        fn vfb_specs(display in 0u32..59636, listen in "[0-9.]{1,15}", junk in ".{0,40}") {
            let f = parse_vfb(&format!("vnc=1,vnclisten={listen}, vncdisplay={display}")).unwrap();
            prop_assert!(f.vnc);
            prop_assert_eq!(f.display, Some(display));
            prop_assert_eq!(f.listen.as_deref(), Some(listen.as_str()));
            let _ = parse_vfb(&junk);
        }
    }
}
