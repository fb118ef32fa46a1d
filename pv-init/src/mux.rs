//! The exec channel's wire format (docs/guest-protocol.md, "Exec channel"): one byte stream
//! between hx and pv-init carrying many sessions (`hx exec` processes), each a numbered stream.
//!
//! A frame is a 9-byte header — kind (u8), stream (u32 LE), payload length (u32 LE) — and at
//! most `MAX_PAYLOAD` bytes. Both ends start with a `Hello` on stream 0 naming the version.
//! Output and input are flow-controlled per stream with credits: a sender may have at most
//! `WINDOW` bytes of `cost` outstanding until the receiver grants more, so one slow reader never
//! stalls the others and no end buffers without bound. Everything read from the guest is
//! parsed as hostile: unknown kinds, oversized frames and bad payloads are errors.
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};

pub const VERSION: u16 = 1;
pub const MAGIC: &[u8; 5] = b"HXMUX";
pub const HEADER: usize = 9;
/// Largest payload of any frame.
pub const MAX_PAYLOAD: usize = 64 << 10;
/// Credit bytes a sender starts with on each stream and each direction.
pub const WINDOW: u32 = 256 << 10;
/// Most sessions open at once on one channel.
pub const MAX_STREAMS: usize = 64;
/// Largest exec request (its JSON).
pub const MAX_REQUEST: usize = 32 << 10;

/// What a frame carries. The numbers are the wire's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Stream 0, both ways: `MAGIC` + version (u16 LE).
    Hello = 1,
    /// Host → guest: start a session, payload an `ExecRequest` as JSON.
    Open = 2,
    /// Host → guest: input bytes; an empty payload is the end of input.
    Stdin = 3,
    /// Host → guest: the terminal's new size, rows and cols (u16 LE each).
    Resize = 4,
    /// Host → guest: a signal number (u32 LE) for the session's process.
    Signal = 5,
    /// Host → guest: the client went away; its output can be dropped (the process runs on).
    Close = 6,
    /// Both ways: the sender may send `n` (u32 LE) more bytes of cost on this stream.
    Credit = 7,
    /// Host → guest: a question about the container (`Query` JSON) on a stream of its own.
    Query = 8,
    /// Guest → host: the process runs, its pid (u32 LE).
    Started = 10,
    Stdout = 11,
    Stderr = 12,
    /// Guest → host: how the session ended, a status JSON line (`status::Status`); last frame
    /// of its stream.
    Exit = 13,
    /// Guest → host: the answer to a Query (JSON); last frame of its stream.
    Answer = 14,
}

impl Kind {
    fn from_wire(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Hello,
            2 => Kind::Open,
            3 => Kind::Stdin,
            4 => Kind::Resize,
            5 => Kind::Signal,
            6 => Kind::Close,
            7 => Kind::Credit,
            8 => Kind::Query,
            10 => Kind::Started,
            11 => Kind::Stdout,
            12 => Kind::Stderr,
            13 => Kind::Exit,
            14 => Kind::Answer,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: Kind,
    pub stream: u32,
    pub payload: Vec<u8>,
}

/// What credit a frame uses up: its bytes plus a fixed share for the header, so that many tiny
/// frames are bounded too.
pub fn cost(payload_len: usize) -> u32 {
    payload_len as u32 + 64
}

#[derive(Debug, thiserror::Error)]
pub enum MuxError {
    #[error("exec channel: {0}")]
    Io(#[from] std::io::Error),
    #[error("exec channel: unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("exec channel: frame of {0} bytes (at most {MAX_PAYLOAD})")]
    TooLong(u32),
    #[error("exec channel: bad {kind:?} frame: {why}")]
    Malformed { kind: Kind, why: String },
    #[error("exec channel: version {0} (this hx speaks {VERSION})")]
    Version(u16),
}

impl Frame {
    pub fn new(kind: Kind, stream: u32, payload: impl Into<Vec<u8>>) -> Frame {
        Frame {
            kind,
            stream,
            payload: payload.into(),
        }
    }

    pub fn hello() -> Frame {
        let mut p = MAGIC.to_vec();
        p.extend_from_slice(&VERSION.to_le_bytes());
        Frame::new(Kind::Hello, 0, p)
    }

    pub fn u32(kind: Kind, stream: u32, n: u32) -> Frame {
        Frame::new(kind, stream, n.to_le_bytes())
    }

    pub fn resize(stream: u32, rows: u16, cols: u16) -> Frame {
        let mut p = rows.to_le_bytes().to_vec();
        p.extend_from_slice(&cols.to_le_bytes());
        Frame::new(Kind::Resize, stream, p)
    }

    pub fn encode(&self) -> Vec<u8> {
        debug_assert!(self.payload.len() <= MAX_PAYLOAD);
        let mut out = Vec::with_capacity(HEADER + self.payload.len());
        out.push(self.kind as u8);
        out.extend_from_slice(&self.stream.to_le_bytes());
        out.extend_from_slice(&(self.payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.payload);
        out
    }

    /// One whole frame (header and payload) in a single write, so that writers sharing the
    /// channel under a lock never interleave.
    pub fn write_to(&self, w: &mut impl Write) -> std::io::Result<()> {
        w.write_all(&self.encode())
    }

    /// The next frame, Ok(None) at a clean end of the stream (between frames).
    pub fn read_from(r: &mut impl Read) -> Result<Option<Frame>, MuxError> {
        let mut h = [0u8; HEADER];
        let mut got = 0;
        while got < HEADER {
            match r.read(&mut h[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into()),
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        let kind = Kind::from_wire(h[0]).ok_or(MuxError::UnknownKind(h[0]))?;
        let stream = u32::from_le_bytes(h[1..5].try_into().expect("4 bytes"));
        let len = u32::from_le_bytes(h[5..9].try_into().expect("4 bytes"));
        if len as usize > MAX_PAYLOAD {
            return Err(MuxError::TooLong(len));
        }
        let mut payload = vec![0u8; len as usize];
        r.read_exact(&mut payload)?;
        let f = Frame {
            kind,
            stream,
            payload,
        };
        f.check()?;
        Ok(Some(f))
    }

    /// The payload rules of each kind (lengths; Hello's magic). Versions and JSON are checked
    /// where they are used.
    fn check(&self) -> Result<(), MuxError> {
        let bad = |why: &str| {
            Err(MuxError::Malformed {
                kind: self.kind,
                why: why.to_string(),
            })
        };
        let n = self.payload.len();
        match self.kind {
            Kind::Hello if n != MAGIC.len() + 2 || &self.payload[..5] != MAGIC => {
                bad("not an hx exec channel")
            }
            Kind::Hello if self.stream != 0 => bad("not on stream 0"),
            Kind::Resize if n != 4 => bad("payload is not 4 bytes"),
            Kind::Signal | Kind::Credit | Kind::Started if n != 4 => bad("payload is not 4 bytes"),
            Kind::Close if n != 0 => bad("payload is not empty"),
            Kind::Open if n > MAX_REQUEST => bad("request too long"),
            Kind::Query if n > 1024 => bad("query too long"),
            Kind::Exit if n > crate::status::MAX_LINE => bad("status too long"),
            _ if self.kind != Kind::Hello && self.stream == 0 => bad("on stream 0"),
            _ => Ok(()),
        }
    }

    /// Hello's version, checked against ours.
    pub fn version(&self) -> Result<u16, MuxError> {
        let v = u16::from_le_bytes([self.payload[5], self.payload[6]]);
        if v != VERSION {
            return Err(MuxError::Version(v));
        }
        Ok(v)
    }

    /// The u32 of a Signal, Credit or Started frame (check() fixed its length).
    pub fn number(&self) -> u32 {
        u32::from_le_bytes(self.payload[..4].try_into().expect("checked length"))
    }

    /// Resize's rows and cols.
    pub fn size(&self) -> (u16, u16) {
        (
            u16::from_le_bytes([self.payload[0], self.payload[1]]),
            u16::from_le_bytes([self.payload[2], self.payload[3]]),
        )
    }
}

/// A process to start in a running container (`hx exec`). Everything is resolved by the host
/// except the user, which pv-init looks up in the container's own passwd and group files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    pub args: Vec<String>,
    /// Added to (and overriding) the container's environment.
    #[serde(default)]
    pub env: Vec<String>,
    /// `USER[:GROUP]`, names or ids; empty: the container's user.
    #[serde(default)]
    pub user: String,
    /// Empty: the container's working directory.
    #[serde(default)]
    pub cwd: String,
    /// `-t`: a pty of this size.
    #[serde(default)]
    pub tty: Option<crate::spec::TtySize>,
    /// `-i`: stdin frames feed the process; else its stdin is /dev/null.
    #[serde(default)]
    pub stdin: bool,
    /// Work pv-init does itself instead of starting a process (`args` is then empty).
    #[serde(default)]
    pub builtin: Option<Builtin>,
    /// Pods: this process is a pod member's workload, over that member's own root assembled
    /// from its hot-plugged disks (docs/pods.md). `env` is then its whole environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<MemberStart>,
    /// Pods: run in this member's root (`hx exec` into a pod member) instead of the guest's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Its capability sets (`hx exec --privileged`, an OCI process's `capabilities`). None:
    /// the container's workload's (a pod member's workload: all, as before capabilities).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<crate::spec::Capabilities>,
    /// None: as the container's workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_new_privileges: Option<bool>,
    /// Its system-call filter (a pod member's workload: its spec's). None: the container's
    /// workload's (a member's start: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp: Option<crate::spec::Seccomp>,
}

/// A pod member's disks and root: the image rootfs and the writable layer, hot-plugged by the
/// host where `disks` says (docs/pods.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberStart {
    /// The member's container id: lower-case hex, what its root is named after in the guest.
    pub id: String,
    pub disks: MemberDisks,
    /// The image's filesystem (`erofs`).
    pub rootfs_type: String,
    /// A writable layer disk (ext4); else a tmpfs holds the upper.
    pub upper_disk: bool,
    /// Its volumes: host directories and files (`Share`: the directory
    /// `<id>/<tag>` of the pod's members export, `MEMBERS_SHARE_TAG`) and tmpfs mounts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<crate::spec::Mount>,
    /// Small host files copied in at its start, where the pod VM's backend cannot share host
    /// files with a running VM (Xen): CRI's /etc/resolv.conf, a termination log.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<MemberFile>,
    /// Small read-only host directories copied in likewise (a ConfigMap, a Secret, a projected
    /// service-account token), each bound read-only onto its target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trees: Vec<MemberTree>,
    /// Its memory and CPU limits inside the pod's VM (pv-init's cgroup.rs).
    #[serde(default, skip_serializing_if = "MemberLimits::is_none")]
    pub limits: MemberLimits,
    /// In the pod VM's PID namespace (CRI's `shareProcessNamespace`) instead of its own.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shared_pids: bool,
    /// In this running member's PID namespace (its id) instead of its own: CRI's
    /// NamespaceMode TARGET (an ephemeral container, `kubectl debug --target`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_target: Option<String>,
}

/// A pod member's limits inside its pod's VM, as cgroup v2 sets them: `memory.max`,
/// `cpu.max` (a quota per 100 ms period) and `cpu.weight`. `None`: no limit beyond the VM's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// Percent of one CPU (docker's `--cpus` × 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_pct: Option<u32>,
    /// cgroup v2's weight, 1..=10000 (100 is the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_weight: Option<u32>,
    /// The most processes and threads at once (`pids.max`, docker's `--pids-limit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_max: Option<u64>,
}

/// `Query::Limits`'s name for a single container's own group (its workload and execs,
/// `--pids-limit`): no member is called so (members are named by 64 hex digits).
pub const WORKLOAD_GROUP: &str = "workload";

/// The greatest `pids.max` (the kernel's PID_MAX_LIMIT).
pub const MAX_PIDS: u64 = 4 << 20;

/// The least memory limit a member may have: below it nothing starts.
pub const MIN_MEMBER_MEMORY: u64 = 4 << 20;
/// The greatest CPU cap: as many CPUs as a VM may have.
pub const MAX_MEMBER_CPU_PCT: u32 = 32 * 100;

impl MemberLimits {
    pub fn is_none(&self) -> bool {
        *self == MemberLimits::default()
    }

    /// Within what cgroup v2 takes (and what makes sense for a member).
    pub fn check(&self) -> Result<(), &'static str> {
        if self.memory_bytes.is_some_and(|m| m < MIN_MEMBER_MEMORY) {
            return Err("pod member: memory limit below 4 MiB");
        }
        if self
            .cpu_pct
            .is_some_and(|c| c == 0 || c > MAX_MEMBER_CPU_PCT)
        {
            return Err("pod member: CPU cap out of range");
        }
        if self.cpu_weight.is_some_and(|w| !(1..=10000).contains(&w)) {
            return Err("pod member: CPU weight out of range");
        }
        if self.pids_max.is_some_and(|p| !(1..=MAX_PIDS).contains(&p)) {
            return Err("pod member: pids limit out of range");
        }
        Ok(())
    }

    /// docker's CPU shares (2..=262144) as cgroup v2's weight, the conversion runc uses.
    pub fn weight_of_shares(shares: u64) -> u32 {
        let s = shares.clamp(2, 262_144);
        (1 + ((s - 2) * 9999) / 262_142) as u32
    }
}

/// A read-only host directory given to a pod member as a copy made when it starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberTree {
    /// Absolute path inside the member's root.
    pub target: String,
    /// Its entries, each directory before what it holds (`check_tree`).
    pub entries: Vec<TreeEntry>,
}

/// One entry of a copied directory, by its path relative to the directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum TreeEntry {
    Dir {
        path: String,
        /// Permission bits (0o777 at most: no setuid, setgid or sticky bit).
        #[serde(default = "dir_mode")]
        mode: u32,
    },
    /// A regular file's bytes, base64.
    File {
        path: String,
        base64: String,
        #[serde(default = "file_mode")]
        mode: u32,
    },
    /// A symlink (lexically inside the directory: kubelet's `..data` links).
    Symlink { path: String, to: String },
}

fn dir_mode() -> u32 {
    0o755
}

fn file_mode() -> u32 {
    0o644
}

/// At most this many entries per copied directory, this many directories, this deep.
pub const MAX_TREE_ENTRIES: usize = 64;
pub const MAX_MEMBER_TREES: usize = 8;
pub const MAX_TREE_DEPTH: usize = 8;

impl TreeEntry {
    pub fn path(&self) -> &str {
        match self {
            TreeEntry::Dir { path, .. }
            | TreeEntry::File { path, .. }
            | TreeEntry::Symlink { path, .. } => path,
        }
    }

    pub fn dir(path: &str, mode: u32) -> TreeEntry {
        TreeEntry::Dir {
            path: path.to_string(),
            mode,
        }
    }

    pub fn file(path: &str, bytes: &[u8], mode: u32) -> TreeEntry {
        TreeEntry::File {
            path: path.to_string(),
            mode,
            base64: encode_file(bytes),
        }
    }
}

/// A copied file's bytes as they travel (base64, standard alphabet, padded).
fn encode_file(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A copied file's bytes from `base64`; None when it is not base64 or holds more than
/// MAX_MEMBER_FILE_BYTES (refused before decoding when its length says so).
pub fn decode_file(base64: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    if base64.len() > MAX_MEMBER_FILE_BYTES.div_ceil(3) * 4 {
        return None;
    }
    base64::engine::general_purpose::STANDARD
        .decode(base64)
        .ok()
        .filter(|b| b.len() <= MAX_MEMBER_FILE_BYTES)
}

/// The entries of a copied directory checked: plain relative paths (no `.`, `..` or empty
/// component, at most MAX_TREE_DEPTH deep), each once, every parent an earlier `Dir` entry
/// (so nothing is ever written through a symlink or into a file), symlinks relative and
/// lexically inside the directory (each on its own: a chain of links is not followed here;
/// they resolve inside the member's own root in any case), permission bits only, files' bytes within MAX_MEMBER_FILE_BYTES. Returns the
/// files' bytes in all.
pub fn check_tree(entries: &[TreeEntry]) -> Result<usize, String> {
    if entries.len() > MAX_TREE_ENTRIES {
        return Err(format!("more than {MAX_TREE_ENTRIES} entries"));
    }
    let mut dirs = std::collections::HashSet::new();
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    for e in entries {
        let path = e.path();
        let comps: Vec<&str> = path.split('/').collect();
        if path.len() > 1024
            || comps.len() > MAX_TREE_DEPTH
            || comps
                .iter()
                .any(|c| c.is_empty() || *c == "." || *c == ".." || c.contains('\0'))
        {
            return Err(format!("entry {path:?}: not a plain relative path"));
        }
        if !seen.insert(path) {
            return Err(format!("entry {path:?} twice"));
        }
        if let Some((parent, _)) = path.rsplit_once('/') {
            if !dirs.contains(parent) {
                return Err(format!("entry {path:?}: its directory comes not before it"));
            }
        }
        match e {
            TreeEntry::Dir { mode, .. } | TreeEntry::File { mode, .. } if *mode > 0o777 => {
                return Err(format!("entry {path:?}: mode {mode:o}"));
            }
            TreeEntry::Dir { .. } => {
                dirs.insert(path);
            }
            TreeEntry::File { base64, .. } => {
                total += decode_file(base64)
                    .ok_or_else(|| format!("entry {path:?}: not base64 or too long"))?
                    .len();
            }
            TreeEntry::Symlink { to, .. } => {
                // Lexically inside: from the link's directory, `..` never climbs above the top.
                let mut depth = comps.len() as isize - 1;
                let mut ok = !to.is_empty()
                    && to.len() <= 1024
                    && !to.starts_with('/')
                    && !to.contains('\0');
                for c in to.split('/') {
                    match c {
                        "" | "." => {}
                        ".." => {
                            depth -= 1;
                            ok &= depth >= 0;
                        }
                        _ => depth += 1,
                    }
                }
                if !ok {
                    return Err(format!(
                        "entry {path:?}: its link leads out of the directory"
                    ));
                }
            }
        }
    }
    Ok(total)
}

/// A host file given to a pod member as a copy made when it starts (not live: what the
/// member writes to it stays in the guest), bound onto `target` in its root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberFile {
    /// Absolute path inside the member's root.
    pub target: String,
    pub readonly: bool,
    /// The file's bytes, base64 (standard alphabet, padded).
    pub base64: String,
    /// Its permission bits (0o777 at most), as on the host.
    #[serde(default = "file_mode")]
    pub mode: u32,
}

/// At most this many copied files per member, of at most MAX_MEMBER_FILE_BYTES each and
/// MAX_MEMBER_FILES_BYTES in all (decoded): they travel in the Open request (MAX_REQUEST).
pub const MAX_MEMBER_FILES: usize = 16;
pub const MAX_MEMBER_FILE_BYTES: usize = 8 << 10;
pub const MAX_MEMBER_FILES_BYTES: usize = 16 << 10;

/// The host's check of a member's copies before it sends them (pv-init checks each part again
/// as it parses the request).
pub fn check_copies(files: usize, trees: usize, bytes: usize) -> Result<(), String> {
    if files > MAX_MEMBER_FILES || trees > MAX_MEMBER_TREES || bytes > MAX_MEMBER_FILES_BYTES {
        return Err(format!(
            "more than {MAX_MEMBER_FILES} files, {MAX_MEMBER_TREES} directories or {MAX_MEMBER_FILES_BYTES} bytes in all"
        ));
    }
    Ok(())
}

impl MemberFile {
    pub fn new(target: &str, readonly: bool, bytes: &[u8]) -> MemberFile {
        MemberFile {
            target: target.to_string(),
            readonly,
            base64: encode_file(bytes),
            mode: file_mode(),
        }
    }

    pub fn with_mode(self, mode: u32) -> MemberFile {
        MemberFile { mode, ..self }
    }

    /// The file's bytes; None when they are not base64 or longer than MAX_MEMBER_FILE_BYTES.
    pub fn bytes(&self) -> Option<Vec<u8>> {
        decode_file(&self.base64)
    }
}

/// A copied file's target: absolute, bounded, no NUL, no `..` (it is resolved inside the
/// member's root anyway).
fn valid_member_target(t: &str) -> bool {
    t.starts_with('/')
        && t.len() <= 4096
        && !t.contains('\0')
        && !t.split('/').any(|c| c == "..")
        && t.split('/').any(|c| !c.is_empty() && c != ".")
}

/// The 9p mount tag of a pod VM's members export: the host binds each member's host
/// directories and files under `<member id>/<share tag>` in it (QEMU; docs/pods.md).
pub const MEMBERS_SHARE_TAG: &str = "hxmembers";
/// The 9p mount tag of a pod VM's read-only members export: members' `:ro` host directories
/// and files, exported read-only with the host's own metadata (QEMU's passthrough model), so
/// that their symlinks read as symlinks (kubelet's ConfigMaps and Secrets are made of them;
/// the mapped models cannot read a host symlink).
pub const MEMBERS_RO_SHARE_TAG: &str = "hxmembersro";

/// Where a pod member's two disks are, as the pod VM's backend plugged them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "bus", rename_all = "snake_case", deny_unknown_fields)]
pub enum MemberDisks {
    /// QEMU: SCSI target `target` on the pod's virtio-scsi bus; LUN 0 the image, LUN 1 the layer.
    Scsi { target: u32 },
    /// Xen: blkfront vbds of member slot `slot` (`xen_member_disk_index`).
    Xen { slot: u32 },
}

/// Highest SCSI target a pod member's disks may use (virtio-scsi's limit).
pub const MAX_MEMBER_TARGET: u32 = 255;
/// Highest Xen member slot: its disks stay within the two-letter vdevs (xvdzz is index 701).
pub const MAX_XEN_MEMBER_SLOT: u32 = 255;
/// The first xvd index of member disks: xvdaa, above every disk a pod's VM boots with.
const XEN_MEMBER_FIRST_INDEX: u32 = 26;

/// Most volume disks a member of a Xen pod may have: each slot has this many xvd indexes from
/// xvdaaa on, so that the last one's blkfront minor (index << 8) stays below Linux's 2^20.
pub const MAX_XEN_MEMBER_VOLUMES: u32 = 8;
/// The first xvd index of member volume disks: xvdaaa, above every image and layer disk.
const XEN_MEMBER_FIRST_VOLUME_INDEX: u32 = 702;

/// The xvd index (0 = xvda, 26 = xvdaa) of disk `disk` of Xen member slot `slot`: 0 the image
/// and 1 the layer (two-letter vdevs), 2 and up its volumes (three-letter vdevs, at most
/// `MAX_XEN_MEMBER_VOLUMES`: a larger `disk` is clamped to the slot's last volume; `parse`
/// refuses a request that names one).
pub fn xen_member_disk_index(slot: u32, disk: u32) -> u32 {
    match disk {
        0 | 1 => XEN_MEMBER_FIRST_INDEX + 2 * slot + disk,
        v => {
            XEN_MEMBER_FIRST_VOLUME_INDEX
                + MAX_XEN_MEMBER_VOLUMES * slot
                + (v - 2).min(MAX_XEN_MEMBER_VOLUMES - 1)
        }
    }
}

/// The Xen virtual-device number of xvd index `index` (libxl's and blkfront's rule: the
/// extended form from xvdq on); the guest's xenbus device is `vbd-<number>`.
pub fn xen_vbd_number(index: u32) -> u32 {
    if index < 16 {
        (202 << 8) | (index << 4)
    } else {
        (1 << 28) | (index << 8)
    }
}

/// A container id as pods carry it: 1 to 64 lower-case hex digits (safe as a path component).
pub fn valid_member_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Work pv-init does itself in the container's root: `hx cp`'s two halves (pv_init::copy),
/// `hx export` and `hx commit` (pv_init::layer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Builtin {
    /// `path` as a tar stream on stdout.
    TarFrom { path: String },
    /// The tar stream on stdin unpacked to `path`.
    TarInto { path: String },
    /// `hx export`: the container's filesystem as a tar stream on stdout (pv_init::layer).
    ExportRoot,
    /// `hx commit`: the writable layer's changes as an OCI layer on stdout; `pause` stops the
    /// workload's processes meanwhile.
    UpperDiff { pause: bool },
    /// `hx volume snapshot`: the filesystem mounted at `path` frozen; `frozen` on stdout once
    /// it is, thawed at the end of stdin (pv_init::freeze).
    Freeze { path: String },
}

impl ExecRequest {
    /// An Open frame's payload (untrusted on the guest side only in principle: hx wrote it).
    pub fn parse(payload: &[u8]) -> Result<ExecRequest, MuxError> {
        let r: ExecRequest = serde_json::from_slice(payload).map_err(|e| MuxError::Malformed {
            kind: Kind::Open,
            why: e.to_string(),
        })?;
        if r.args.is_empty() && r.builtin.is_none() {
            return Err(MuxError::Malformed {
                kind: Kind::Open,
                why: "no command".into(),
            });
        }
        let bad = |why: &str| {
            Err(MuxError::Malformed {
                kind: Kind::Open,
                why: why.into(),
            })
        };
        if let Some(m) = &r.member {
            if !valid_member_id(&m.id) {
                return bad("pod member: invalid id");
            }
            match m.disks {
                MemberDisks::Scsi { target } if target > MAX_MEMBER_TARGET => {
                    return bad("pod member: SCSI target out of range");
                }
                MemberDisks::Xen { slot } if slot > MAX_XEN_MEMBER_SLOT => {
                    return bad("pod member: Xen slot out of range");
                }
                MemberDisks::Xen { .. } if m.mounts.iter().any(|v| matches!(v.source, crate::spec::MountSource::Disk { disk, .. } if disk >= 2 + MAX_XEN_MEMBER_VOLUMES)) => {
                    return bad("pod member: Xen volume disk out of range");
                }
                _ => {}
            }
            if let Err(why) = m.limits.check() {
                return bad(why);
            }
            if m.rootfs_type != "erofs" && m.rootfs_type != "ext4" {
                return bad("pod member: unknown rootfs type");
            }
            if r.builtin.is_some() || r.container.is_some() {
                return bad("pod member: a workload starts alone");
            }
            if m.files.len() > MAX_MEMBER_FILES {
                return bad("pod member: too many copied files");
            }
            if m.trees.len() > MAX_MEMBER_TREES {
                return bad("pod member: too many copied directories");
            }
            let mut total = 0;
            for t in &m.trees {
                if !valid_member_target(&t.target) {
                    return bad(
                        "pod member: a copied directory's target is not a plain absolute path",
                    );
                }
                match check_tree(&t.entries) {
                    Ok(n) => total += n,
                    Err(_) => return bad("pod member: a copied directory is malformed"),
                }
            }
            for f in &m.files {
                if !valid_member_target(&f.target) {
                    return bad("pod member: a copied file's target is not a plain absolute path");
                }
                let Some(b) = f.bytes() else {
                    return bad("pod member: a copied file is not base64 or too long");
                };
                if f.mode > 0o777 {
                    return bad("pod member: a copied file's mode has more than permission bits");
                }
                total += b.len();
            }
            if total > MAX_MEMBER_FILES_BYTES {
                return bad("pod member: copied files too long in all");
            }
        }
        if r.container.as_deref().is_some_and(|c| !valid_member_id(c)) {
            return bad("pod member: invalid container id");
        }
        Ok(r)
    }
}

/// What `hx top` and `hx stats` ask of a running container, and a pod member's new limits
/// (`hx update`, CRI's UpdateContainerResources; answered with `LimitsAnswer`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "what", rename_all = "snake_case", deny_unknown_fields)]
pub enum Query {
    Top,
    /// The guest's counters, or with `member` a pod member's own (its cgroup's CPU time,
    /// memory and processes; the network and disks stay the pod VM's).
    Stats {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        member: Option<String>,
    },
    Limits {
        member: String,
        limits: MemberLimits,
    },
}

impl Query {
    /// A query's JSON, checked like an Open's (hx wrote it; the guest checks all the same).
    pub fn parse(payload: &[u8]) -> Result<Query, String> {
        let q: Query = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
        match &q {
            Query::Limits { member, limits } => {
                if !valid_member_id(member) && member != WORKLOAD_GROUP {
                    return Err("pod member: invalid id".into());
                }
                limits.check()?;
            }
            Query::Stats {
                member: Some(member),
            } if !valid_member_id(member) => return Err("pod member: invalid id".into()),
            _ => {}
        }
        Ok(q)
    }
}

/// A pod member's limits as the guest applied them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsAnswer {
    pub applied: MemberLimits,
}

/// Most processes a Top answer lists, and longest command line of each: the answer fits a frame.
pub const MAX_TOP_PROCESSES: usize = 256;
pub const MAX_TOP_CMD: usize = 160;

/// One process in the container, as `hx top` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessInfo {
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    /// The user's name in the container's passwd, else empty.
    pub user: String,
    /// Seconds since the epoch (the guest's clock).
    pub started: u64,
    /// User + system CPU time, seconds.
    pub cpu_secs: u64,
    /// `pts/N`, or `?` without a terminal.
    pub tty: String,
    pub cmd: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopAnswer {
    pub processes: Vec<ProcessInfo>,
    /// Processes left out past MAX_TOP_PROCESSES.
    pub more: u32,
}

/// Counters as the guest sees them (`hx stats` turns two of them into rates).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsAnswer {
    /// Clock ticks all CPUs spent busy, and in total (/proc/stat).
    pub cpu_busy: u64,
    pub cpu_total: u64,
    pub cpus: u32,
    /// Bytes: MemTotal − MemAvailable, and MemTotal.
    pub mem_used: u64,
    pub mem_total: u64,
    /// Bytes through the guest's interfaces other than `lo`.
    pub net_rx: u64,
    pub net_tx: u64,
    /// Bytes read from and written to its disks.
    pub block_read: u64,
    pub block_write: u64,
    pub pids: u32,
}

/// An Answer frame's payload (hostile on the host: bounded by the frame, strict JSON).
pub fn parse_answer<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<T, MuxError> {
    serde_json::from_slice(payload).map_err(|e| MuxError::Malformed {
        kind: Kind::Answer,
        why: e.to_string(),
    })
}

/// Credit accounting of one direction of one stream: what the sender may still send.
#[derive(Debug)]
pub struct Window {
    left: u64,
}

impl Default for Window {
    fn default() -> Self {
        Window {
            left: u64::from(WINDOW),
        }
    }
}

impl Window {
    /// Takes the cost of a frame if the window allows it.
    pub fn take(&mut self, len: usize) -> bool {
        let c = u64::from(cost(len));
        if c > self.left {
            return false;
        }
        self.left -= c;
        true
    }

    /// Adds granted credit; a peer may never grant more than a full window in total.
    pub fn grant(&mut self, n: u32) {
        self.left = (self.left + u64::from(n)).min(u64::from(WINDOW));
    }

    pub fn left(&self) -> u64 {
        self.left
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_are_checked_at_each_limit() {
        assert!(check_copies(MAX_MEMBER_FILES, MAX_MEMBER_TREES, MAX_MEMBER_FILES_BYTES).is_ok());
        assert!(check_copies(MAX_MEMBER_FILES + 1, 0, 0).is_err());
        assert!(check_copies(0, MAX_MEMBER_TREES + 1, 0).is_err());
        assert!(check_copies(0, 0, MAX_MEMBER_FILES_BYTES + 1).is_err());
    }

    #[test]
    fn frames_round_trip() {
        for f in [
            Frame::hello(),
            Frame::new(Kind::Stdout, 3, b"hello".to_vec()),
            Frame::u32(Kind::Credit, 7, 4096),
            Frame::resize(2, 24, 80),
            Frame::new(Kind::Close, 9, Vec::new()),
        ] {
            let bytes = f.encode();
            let back = Frame::read_from(&mut &bytes[..]).unwrap().unwrap();
            assert_eq!(back, f);
        }
    }

    #[test]
    fn a_clean_end_is_none_and_a_torn_frame_an_error() {
        assert!(Frame::read_from(&mut &[][..]).unwrap().is_none());
        let bytes = Frame::new(Kind::Stdout, 1, b"abc".to_vec()).encode();
        assert!(Frame::read_from(&mut &bytes[..5]).is_err());
        assert!(Frame::read_from(&mut &bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn hostile_headers_are_refused_before_allocating() {
        let mut h = vec![Kind::Stdout as u8];
        h.extend_from_slice(&1u32.to_le_bytes());
        h.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            Frame::read_from(&mut &h[..]),
            Err(MuxError::TooLong(u32::MAX))
        ));
        assert!(matches!(
            Frame::read_from(&mut &[99u8, 0, 0, 0, 0, 0, 0, 0, 0][..]),
            Err(MuxError::UnknownKind(99))
        ));
    }

    #[test]
    fn a_different_version_is_named() {
        let mut f = Frame::hello();
        f.payload[5] = 9;
        assert!(matches!(f.version(), Err(MuxError::Version(9))));
        assert_eq!(Frame::hello().version().unwrap(), VERSION);
    }

    #[test]
    fn windows_bound_what_is_outstanding() {
        let mut w = Window::default();
        let mut sent = 0u64;
        while w.take(MAX_PAYLOAD) {
            sent += MAX_PAYLOAD as u64;
        }
        assert!(sent <= u64::from(WINDOW));
        w.grant(u32::MAX);
        assert_eq!(w.left(), u64::from(WINDOW));
    }

    #[test]
    fn exec_requests_need_a_command_and_known_fields() {
        assert!(ExecRequest::parse(br#"{"args":[]}"#).is_err());
        assert!(ExecRequest::parse(br#"{"args":["sh"],"evil":1}"#).is_err());
        let r = ExecRequest::parse(br#"{"args":["sh","-c","true"],"user":"1000"}"#).unwrap();
        assert_eq!(r.user, "1000");
        assert!(!r.stdin);
    }

    #[test]
    fn pod_member_requests_are_checked() {
        let ok = br#"{"args":["sh"],"member":{"id":"ab12","disks":{"bus":"scsi","target":3},"rootfs_type":"erofs","upper_disk":true}}"#;
        let r = ExecRequest::parse(ok).unwrap();
        assert_eq!(r.member.unwrap().disks, MemberDisks::Scsi { target: 3 });
        let ok = br#"{"args":["sh"],"member":{"id":"ab12","disks":{"bus":"xen","slot":255},"rootfs_type":"erofs","upper_disk":false}}"#;
        let r = ExecRequest::parse(ok).unwrap();
        assert_eq!(r.member.unwrap().disks, MemberDisks::Xen { slot: 255 });
        for bad in [
            &br#"{"args":["sh"],"member":{"id":"../x","disks":{"bus":"scsi","target":3},"rootfs_type":"erofs","upper_disk":true}}"#[..],
            br#"{"args":["sh"],"member":{"id":"ab","disks":{"bus":"scsi","target":256},"rootfs_type":"erofs","upper_disk":true}}"#,
            br#"{"args":["sh"],"member":{"id":"ab","disks":{"bus":"xen","slot":256},"rootfs_type":"erofs","upper_disk":true}}"#,
            br#"{"args":["sh"],"member":{"id":"ab","disks":{"bus":"xen","slot":1,"target":2},"rootfs_type":"erofs","upper_disk":true}}"#,
            br#"{"args":["sh"],"member":{"id":"ab","disks":{"bus":"usb","slot":1},"rootfs_type":"erofs","upper_disk":true}}"#,
            br#"{"args":["sh"],"member":{"id":"ab","disks":{"slot":1},"rootfs_type":"erofs","upper_disk":true}}"#,
            br#"{"args":["sh"],"member":{"id":"ab","target":1,"rootfs_type":"erofs","upper_disk":true}}"#,
            br#"{"args":["sh"],"member":{"id":"ab","disks":{"bus":"scsi","target":1},"rootfs_type":"xfs","upper_disk":true}}"#,
            br#"{"args":["sh"],"member":{"id":"ab","disks":{"bus":"scsi","target":1},"rootfs_type":"erofs","upper_disk":true,"x":1}}"#,
            br#"{"args":["sh"],"container":"AB/.."}"#,
            br#"{"args":["sh"],"container":""}"#,
        ] {
            assert!(ExecRequest::parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert!(ExecRequest::parse(br#"{"args":["sh"],"container":"0123abcd"}"#).is_ok());
    }

    #[test]
    fn copied_trees_stay_inside_and_are_built_in_order() {
        let d = |p: &str| TreeEntry::dir(p, 0o755);
        let l = |p: &str, to: &str| TreeEntry::Symlink {
            path: p.into(),
            to: to.into(),
        };
        // kubelet's projected volume.
        let kubelet = vec![
            d("..2026_12_05"),
            TreeEntry::file("..2026_12_05/token", b"eyJ", 0o644),
            TreeEntry::file("..2026_12_05/ca.crt", b"PEM", 0o644),
            l("..data", "..2026_12_05"),
            l("token", "..data/token"),
            l("ca.crt", "..data/ca.crt"),
        ];
        assert_eq!(check_tree(&kubelet), Ok(6));
        for bad in [
            vec![l("x", "/etc/shadow")],
            vec![l("x", "../x")],
            vec![d("a"), l("a/x", "../../x")],
            vec![TreeEntry::file("a/b", b"", 0o644)],
            vec![l("a", "."), TreeEntry::file("a/b", b"", 0o644)],
            vec![
                TreeEntry::file("a", b"", 0o644),
                TreeEntry::file("a", b"", 0o644),
            ],
            vec![d("..")],
            vec![d("/a")],
            vec![d("a/")],
            vec![TreeEntry::file(
                "a",
                &vec![0; MAX_MEMBER_FILE_BYTES + 1],
                0o644,
            )],
            (0..=MAX_TREE_ENTRIES)
                .map(|i| d(&format!("d{i}")))
                .collect(),
        ] {
            assert!(check_tree(&bad).is_err(), "{bad:?}");
        }
        assert!(check_tree(&[d("a"), l("a/x", "../b")]).is_ok());
        assert!(
            check_tree(&[TreeEntry::dir("a", 0o4755)]).is_err(),
            "setuid"
        );
        assert!(
            check_tree(&[TreeEntry::file("a", b"", 0o1777)]).is_err(),
            "sticky"
        );
    }

    #[test]
    fn member_files_are_bounded_and_plain() {
        let with = |files: serde_json::Value| {
            let json = serde_json::json!({"args":["sh"],"member":{"id":"ab12","disks":{"bus":"xen","slot":0},"rootfs_type":"erofs","upper_disk":true,"files":files}});
            ExecRequest::parse(json.to_string().as_bytes())
        };
        let f = MemberFile::new("/etc/resolv.conf", true, b"nameserver 10.0.0.1\n");
        let r = with(serde_json::json!([f])).unwrap();
        let got = &r.member.unwrap().files[0];
        assert_eq!(got.bytes().unwrap(), b"nameserver 10.0.0.1\n");
        assert!(got.readonly);
        let big = MemberFile::new("/a", false, &vec![b'x'; MAX_MEMBER_FILE_BYTES + 1]);
        let most = MemberFile::new("/a", false, &vec![b'x'; MAX_MEMBER_FILE_BYTES]);
        assert!(with(serde_json::json!([most])).is_ok());
        for bad in [
            serde_json::json!([big]),
            serde_json::json!([most, most, most]),
            serde_json::json!([MemberFile::new("etc/x", false, b"")]),
            serde_json::json!([MemberFile::new("/etc/../x", false, b"")]),
            serde_json::json!([MemberFile::new("/", false, b"")]),
            serde_json::json!([{"target":"/x","readonly":false,"base64":"!!"}]),
            serde_json::json!([{"target":"/x","readonly":false,"base64":"","extra":1}]),
            serde_json::json!([{"target":"/x","readonly":false,"base64":"","mode":2048}]),
            serde_json::json!(vec![
                MemberFile::new("/x", false, b"");
                MAX_MEMBER_FILES + 1
            ]),
        ] {
            assert!(with(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn xen_member_disks_are_extended_vbds_like_libxl_numbers_them() {
        // xvdaa (index 26) and xvdab: libxl's extended form, (1 << 28) | (index << 8).
        assert_eq!(xen_member_disk_index(0, 0), 26);
        assert_eq!(xen_member_disk_index(0, 1), 27);
        assert_eq!(xen_member_disk_index(1, 0), 28);
        assert_eq!(xen_vbd_number(26), 268442112);
        // Volumes from xvdaaa (index 702), eight per slot; the last slot's last one keeps its
        // blkfront minor (index << 8) below 2^20.
        assert_eq!(xen_member_disk_index(0, 2), 702);
        assert_eq!(xen_member_disk_index(1, 2), 702 + MAX_XEN_MEMBER_VOLUMES);
        let last = xen_member_disk_index(MAX_XEN_MEMBER_SLOT, 1 + MAX_XEN_MEMBER_VOLUMES);
        assert!(last << 8 < 1 << 20, "{last}");
        assert_eq!(xen_vbd_number(702), (1 << 28) | (702 << 8));
        // xvda, the boot disk: the classic 202 major.
        assert_eq!(xen_vbd_number(0), 51712);
        assert_eq!(xen_vbd_number(1), 51728);
    }

    proptest::proptest! {
        /// Whatever the entries, an accepted tree's symlinks resolve (lexically) inside it and
        /// its paths are plain.
        #[test]
        fn accepted_trees_never_lead_out(
            raw in proptest::collection::vec(("[a./]{1,8}", "[a./]{0,10}", 0u8..3), 0..8),
        ) {
            let entries: Vec<TreeEntry> = raw
                .iter()
                .map(|(p, to, k)| match k {
                    0 => TreeEntry::dir(p, 0o755),
                    1 => TreeEntry::file(p, b"x", 0o644),
                    _ => TreeEntry::Symlink { path: p.clone(), to: to.clone() },
                })
                .collect();
            if check_tree(&entries).is_ok() {
                for e in &entries {
                    let path = e.path();
                    proptest::prop_assert!(!path.starts_with('/') && !path.split('/').any(|c| c.is_empty() || c == "." || c == ".."));
                    if let TreeEntry::Symlink { to, .. } = e {
                        let mut stack: Vec<&str> = path.split('/').collect();
                        stack.pop();
                        for c in to.split('/') {
                            match c {
                                "" | "." => {}
                                ".." => proptest::prop_assert!(stack.pop().is_some()),
                                c => stack.push(c),
                            }
                        }
                        proptest::prop_assert!(!to.starts_with('/'));
                    }
                }
            }
        }

        #[test]
        fn open_payloads_never_panic_and_accepted_ids_are_path_safe(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            id in "[ -~]{0,80}",
            target in 0u32..1000,
            xen in proptest::prelude::any::<bool>(),
            volume in 2u32..20,
        ) {
            let _ = ExecRequest::parse(&bytes);
            let disks = if xen {
                serde_json::json!({"bus":"xen","slot":target})
            } else {
                serde_json::json!({"bus":"scsi","target":target})
            };
            let mount = serde_json::json!({"source":{"kind":"disk","disk":volume,"fstype":"ext4"},"target":"/v","readonly":false});
            let json = serde_json::json!({"args":["x"],"member":{"id":id,"disks":disks,"rootfs_type":"erofs","upper_disk":false,"mounts":[mount]}});

            if let Ok(r) = ExecRequest::parse(json.to_string().as_bytes()) {
                let m = r.member.unwrap();
                match m.disks {
                    MemberDisks::Scsi { target } => proptest::prop_assert!(target <= MAX_MEMBER_TARGET),
                    MemberDisks::Xen { slot } => {
                        proptest::prop_assert!(slot <= MAX_XEN_MEMBER_SLOT);
                        // Both disks within the two-letter vdevs, above xvdz, never shared.
                        let (a, b) = (xen_member_disk_index(slot, 0), xen_member_disk_index(slot, 1));
                        proptest::prop_assert!(a >= 26 && b == a + 1 && b <= 701);
                        // Its volumes above them, in the slot's own range.
                        let v = xen_member_disk_index(slot, volume);
                        proptest::prop_assert!(volume < 2 + MAX_XEN_MEMBER_VOLUMES);
                        proptest::prop_assert!(v >= 702 + slot * MAX_XEN_MEMBER_VOLUMES);
                        proptest::prop_assert!(v < 702 + (slot + 1) * MAX_XEN_MEMBER_VOLUMES);
                    }
                }
                proptest::prop_assert!(!m.id.contains('/') && !m.id.contains('.') && !m.id.is_empty());
            }
        }
    }
}
