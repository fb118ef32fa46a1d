//! The ext4 images volumes are: journal replay of guest-written images, bounded, and
//! snapshots of host directories.
use anyhow::{bail, Context};
use std::path::Path;

/// A read-only disk cannot have its journal replayed by the guest; a VM that was killed leaves
/// one to replay, so the host does it first (no VM has the volume attached: see `busy`).
///
/// The image was written by a guest: it is hostile input to a dom0 tool running as root. So
/// e2fsck runs only when the superblock says a replay is needed (a clean unmount needs none),
/// only for the journal (`-E journal_only`, not a full check), and bounded: 30 s of wall
/// time, 512 MiB of address space, no file growth, no core dump. Bounds stop a hang or a
/// memory blow-up; they do not make a memory-safety bug in e2fsck harmless (docs/volumes.md).
pub(super) fn replay_journal(img: &Path) -> anyhow::Result<()> {
    if !needs_recovery(img)? {
        return Ok(());
    }
    let size = std::fs::metadata(img)?.len();
    let out = run_bounded(
        std::process::Command::new("e2fsck")
            .args(["-p", "-E", "journal_only"])
            .arg(img),
        std::time::Duration::from_secs(30),
        512 << 20,
        size,
    )
    .context("running e2fsck (apt-get install e2fsprogs)")?;
    // 0: clean, 1: the journal was replayed.
    if !matches!(out.0, Some(0) | Some(1)) {
        let first = out
            .1
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim();
        bail!(
            "volume {} needs repair (e2fsck: {})",
            img.display(),
            first.chars().take(200).collect::<String>()
        );
    }
    Ok(())
}

/// The ext4 superblock's "needs recovery" flag (EXT3_FEATURE_INCOMPAT_RECOVER).
pub(super) fn needs_recovery(img: &Path) -> anyhow::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(img).with_context(|| format!("opening {}", img.display()))?;
    let mut sb = [0u8; 0x64];
    f.seek(SeekFrom::Start(1024))?;
    f.read_exact(&mut sb)
        .with_context(|| format!("reading the superblock of {}", img.display()))?;
    if sb[0x38..0x3a] != [0x53, 0xef] {
        bail!("volume {} is not an ext4 image", img.display());
    }
    let incompat = u32::from_le_bytes([sb[0x60], sb[0x61], sb[0x62], sb[0x63]]);
    Ok(incompat & 0x4 != 0)
}

/// Runs a tool on untrusted input with a wall-clock limit and resource limits; returns its
/// exit code (None: killed) and the first 4 KiB of its output.
pub(super) fn run_bounded(
    cmd: &mut std::process::Command,
    limit: std::time::Duration,
    address_space: u64,
    file_size: u64,
) -> anyhow::Result<(Option<i32>, String)> {
    use std::io::{Read, Seek};
    use std::os::unix::process::CommandExt;
    let mut log = tempfile::tempfile()?;
    cmd.stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log.try_clone()?);
    // SAFETY: setrlimit is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            let set = |res, v: u64| {
                let l = libc::rlimit {
                    rlim_cur: v,
                    rlim_max: v,
                };
                if libc::setrlimit(res, &l) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            };
            set(libc::RLIMIT_AS, address_space)?;
            set(libc::RLIMIT_FSIZE, file_size)?;
            set(libc::RLIMIT_CORE, 0)?;
            set(libc::RLIMIT_CPU, limit.as_secs().max(1))?;
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    let Some(status) = crate::process::wait_child(&mut child, limit)? else {
        bail!("{:?} took longer than {limit:?}: killed", cmd.get_program());
    };
    let mut text = Vec::new();
    log.rewind()?;
    log.take(4096).read_to_end(&mut text)?;
    Ok((status.code(), String::from_utf8_lossy(&text).into_owned()))
}

/// A read-only ext4 snapshot of a host directory, for backends that cannot share a directory
/// live (Xen without a 9pfs backend in dom0): the guest sees the directory as it was at start.
pub fn snapshot_dir(dir: &Path, out: &Path) -> anyhow::Result<()> {
    let size = (hx_images::rootfs::tree_size(dir) * 5 / 4 + (16 << 20)).div_ceil(4096) * 4096;
    hx_images::rootfs::make_ext4(Some(dir), out, size)
        .with_context(|| format!("snapshotting {}", dir.display()))
}
