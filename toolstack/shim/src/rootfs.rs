//! The container's root filesystem from the Create request: the snapshotter's mounts
//! (overlay, or a bind of a single layer) mounted on the bundle's `rootfs` directory, as
//! containerd's runc shim does; hx_engine::oci then packs that directory into the erofs image
//! the guest boots (docs/containerd.md).
use anyhow::{bail, Context};
use containerd_shim::protos::types::mount::Mount;
use std::path::{Path, PathBuf};

pub fn dir(bundle: &Path) -> PathBuf {
    bundle.join("rootfs")
}

/// Mounts `mounts` in order on `<bundle>/rootfs`; on a failure, what was mounted is undone.
pub fn mount(bundle: &Path, mounts: &[Mount]) -> anyhow::Result<()> {
    let target = dir(bundle);
    std::fs::create_dir_all(&target).with_context(|| format!("creating {}", target.display()))?;
    for (i, m) in mounts.iter().enumerate() {
        if m.type_.is_empty() || m.type_.contains('\0') || m.source.contains('\0') {
            bail!("rootfs mount {i}: no type, or a NUL byte");
        }
        if let Err(e) = containerd_shim::mount::mount_rootfs(
            Some(&m.type_),
            Some(&m.source),
            &m.options,
            &target,
        ) {
            unmount(bundle);
            bail!("mounting the rootfs ({} from {}): {e}", m.type_, m.source);
        }
    }
    Ok(())
}

/// Unmounts everything on `<bundle>/rootfs` (lazily if busy); nothing mounted is fine.
pub fn unmount(bundle: &Path) {
    let target = dir(bundle);
    for _ in 0..8 {
        match nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) => {}
            Err(_) => break,
        }
    }
}
