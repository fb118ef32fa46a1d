//! The container's root filesystem from the Create request: the snapshotter's mounts
//! (overlay, or a bind of a single layer) mounted on the bundle's `rootfs` directory, as
//! containerd's runc shim does; hx_engine::oci then packs that directory into the erofs image
//! the guest boots (docs/containerd.md). Mounted here rather than with containerd-shim's
//! `mount_rootfs`, which waits for its helper child through the crate's reaper — which this
//! shim turns off (main.rs).
use anyhow::{bail, Context};
use containerd_shim::protos::types::mount::Mount;
use nix::mount::MsFlags;
use std::path::{Path, PathBuf};

/// The kernel's limit for mount data (one page).
const DATA_MAX: usize = 4096;

pub fn dir(bundle: &Path) -> PathBuf {
    bundle.join("rootfs")
}

/// A mount's options as flags and file-system data (what mount(8) does with `-o`).
pub fn parse_options(options: &[String]) -> (MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for o in options {
        let (set, clear) = match o.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "suid" | "dev" | "exec" | "async" | "atime" | "defaults" => {
                (MsFlags::empty(), MsFlags::empty())
            }
            _ => {
                data.push(o.as_str());
                continue;
            }
        };
        flags = (flags | set) & !clear;
    }
    (flags, data.join(","))
}

/// Mounts `mounts` in order on `<bundle>/rootfs`; on a failure, what was mounted is undone.
pub fn mount(bundle: &Path, mounts: &[Mount]) -> anyhow::Result<()> {
    let target = dir(bundle);
    std::fs::create_dir_all(&target).with_context(|| format!("creating {}", target.display()))?;
    for m in mounts {
        if let Err(e) = mount_one(m, &target) {
            unmount(bundle);
            return Err(e);
        }
    }
    Ok(())
}

fn mount_one(m: &Mount, target: &Path) -> anyhow::Result<()> {
    let (flags, data) = parse_options(&m.options);
    if m.type_.is_empty() && !flags.contains(MsFlags::MS_BIND) {
        bail!("rootfs mount from {:?}: no type", m.source);
    }
    if data.len() >= DATA_MAX {
        bail!(
            "rootfs mount ({}): its options are {} bytes, more than the kernel takes ({DATA_MAX})",
            m.type_,
            data.len()
        );
    }
    let what = || format!("mounting the rootfs ({} from {})", m.type_, m.source);
    let fstype = (!m.type_.is_empty() && m.type_ != "bind").then_some(m.type_.as_str());
    let data = (!data.is_empty()).then_some(data.as_str());
    nix::mount::mount(Some(m.source.as_str()), target, fstype, flags, data).with_context(what)?;
    // A read-only bind takes a remount (the kernel ignores MS_RDONLY on the bind itself).
    if flags.contains(MsFlags::MS_BIND) && flags.contains(MsFlags::MS_RDONLY) {
        nix::mount::mount(
            None::<&str>,
            target,
            None::<&str>,
            flags | MsFlags::MS_REMOUNT,
            None::<&str>,
        )
        .with_context(what)?;
    }
    Ok(())
}

/// Unmounts everything on `<bundle>/rootfs` (lazily if busy); nothing mounted is fine.
pub fn unmount(bundle: &Path) {
    let target = dir(bundle);
    while nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH).is_ok() {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn overlay_options_are_data_and_flags_are_flags() {
        let o: Vec<String> = [
            "ro",
            "nosuid",
            "lowerdir=/a:/b",
            "upperdir=/u",
            "workdir=/w",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (flags, data) = parse_options(&o);
        assert_eq!(flags, MsFlags::MS_RDONLY | MsFlags::MS_NOSUID);
        assert_eq!(data, "lowerdir=/a:/b,upperdir=/u,workdir=/w");
        let (flags, data) = parse_options(&["rbind".into(), "ro".into(), "rw".into()]);
        assert_eq!(flags, MsFlags::MS_BIND | MsFlags::MS_REC);
        assert_eq!(data, "");
    }

    proptest! {
        #[test]
        fn any_options_parse(o in proptest::collection::vec("[a-z=/,:]{0,12}", 0..8)) {
            let (_, data) = parse_options(&o);
            prop_assert!(data.len() <= o.iter().map(|s| s.len() + 1).sum::<usize>());
        }
    }
}
