//! A pod member's disks in a Xen pod VM (docs/pods.md): libxl's `device_disk_add` on the pod's
//! domain, blkback in dom0 (with hx's vbd hotplug helper, or libxl's `block` script, like the
//! boot disks). Per member slot S: xvdaa + 2 S (the image, read-only) and the next one (the
//! writable layer), and up to `MAX_XEN_MEMBER_VOLUMES` volume disks from xvdaaa + 8 S, in the
//! order of `MemberFiles::volumes` (`pv_init::mux::xen_member_disk_index`). A slot is claimed in
//! xenstore under the pod's domain (`hx/members/<S>` = the member's id, in a transaction) before
//! its disks are added, so two keepers never plug into the same slot, and a killed keeper's
//! disks are found again by its id; the claims go with the domain.
use super::{block_on, dom_path, sweep_loops, Xen};
use crate::backend::pod::MemberFiles;
use crate::container::Container;
use anyhow::Context as _;
use pv_init::mux::{
    xen_member_disk_index, xen_vbd_number, MemberDisks, MAX_XEN_MEMBER_SLOT, MAX_XEN_MEMBER_VOLUMES,
};
use std::path::{Path, PathBuf};
use xen_bindings::{Context, Xenstore};

fn members_dir(domid: u32) -> String {
    format!("{}/hx/members", dom_path(domid))
}

fn slot_node(domid: u32, slot: u32) -> String {
    format!("{}/{slot}", members_dir(domid))
}

/// The guest's name of disk `disk` (0 the image, 1 the layer, 2… its volumes) of member slot
/// `slot`.
pub fn vdev(slot: u32, disk: u32) -> String {
    xen_bindings::config::vdev_for_index(xen_member_disk_index(slot, disk) as usize)
}

/// Takes `slot` for member `id` if nobody has it.
fn claim(xs: &Xenstore, domid: u32, slot: u32, id: &str) -> anyhow::Result<bool> {
    let node = slot_node(domid, slot);
    Ok(xs.transaction(|t| {
        if t.read(&node)?.is_some() {
            return Ok(false);
        }
        t.write(&node, id.as_bytes())?;
        Ok(true)
    })?)
}

/// The member's own files for `sweep_loops`: its writable layer and volumes (a volume is
/// attached to one container at a time). Not the image, which other members may be plugging
/// at this moment (their helper's loop device is not yet a vbd's).
fn own_files(m: &MemberFiles) -> Vec<PathBuf> {
    let volumes = m.volumes.iter().map(|v| v.path.clone());
    m.upper.iter().cloned().chain(volumes).collect()
}

/// The member's disks in slot order: (disk number, file, read-only).
fn disks(m: &MemberFiles) -> impl Iterator<Item = (u32, &Path, bool)> {
    let image = std::iter::once((0, m.rootfs.as_path(), true));
    let upper = m.upper.as_deref().map(|u| (1, u, false));
    let volumes = (2..)
        .zip(&m.volumes)
        .map(|(n, v)| (n, v.path.as_path(), v.readonly));
    image.chain(upper).chain(volumes)
}

fn attach(
    ctx: &Context,
    domid: u32,
    slot: u32,
    m: &MemberFiles,
    script: Option<&Path>,
) -> anyhow::Result<()> {
    for (disk, path, readonly) in disks(m) {
        let vdev = vdev(slot, disk);
        let spec = xen_bindings::config::DiskSpec {
            target: path.to_path_buf(),
            vdev: vdev.clone(),
            readonly,
        };
        let d = xen_bindings::xlcfg::disk_from_spec(&spec, script)?;
        block_on(ctx.disk_attach(domid, d))
            .with_context(|| format!("adding {vdev} to domain {domid}"))?;
    }
    Ok(())
}

/// Removes slot `slot`'s vbds (those there are, as dom0's backend directory for the domain
/// lists them — not the guest's own device directory, which the guest may empty to keep a disk;
/// volumes first, the image last): the guest is asked to let go first, and libxl forces it
/// after its timeout (a member killed while its root was still mounted).
fn remove(ctx: &Context, xs: &Xenstore, domid: u32, slot: u32) {
    let present: Vec<String> = xs
        .directory(&format!("/local/domain/0/backend/vbd/{domid}"))
        .unwrap_or_default();
    let all = (0..2 + MAX_XEN_MEMBER_VOLUMES).rev();
    for disk in all.filter(|d| {
        let number = xen_vbd_number(xen_member_disk_index(slot, *d)).to_string();
        present.contains(&number)
    }) {
        let vdev = vdev(slot, disk);
        if let Err(e) = block_on(ctx.disk_remove(domid, &vdev)) {
            if !matches!(e, xen_bindings::XenError::Libxl { code: -23, .. }) {
                tracing::warn!("removing {vdev} from domain {domid}: {e}");
            }
        }
    }
}

impl Xen {
    pub(super) fn plug_pod_member(
        &self,
        pod: &Container,
        m: &MemberFiles,
    ) -> anyhow::Result<MemberDisks> {
        if m.volumes.len() > MAX_XEN_MEMBER_VOLUMES as usize {
            anyhow::bail!(
                "{} volumes: a member of a Xen pod takes at most {MAX_XEN_MEMBER_VOLUMES}",
                m.volumes.len()
            );
        }
        let (ctx, domid) = self.running_domain(pod)?;
        let xs = Xenstore::open()?;
        let (script, _) = self.hotplug_scripts()?;
        for slot in 0..=MAX_XEN_MEMBER_SLOT {
            if !claim(&xs, domid, slot, &m.id)? {
                continue;
            }
            if let Err(e) = attach(&ctx, domid, slot, m, script.as_deref()) {
                remove(&ctx, &xs, domid, slot);
                let _ = xs.rm(&slot_node(domid, slot));
                sweep_loops(Some(&xs), &own_files(m));
                return Err(e);
            }
            return Ok(MemberDisks::Xen { slot });
        }
        anyhow::bail!(
            "pod {}: all {} member slots are taken",
            pod.name,
            MAX_XEN_MEMBER_SLOT + 1
        )
    }

    pub(super) fn unplug_pod_member(&self, pod: &Container, m: &MemberFiles) {
        let Ok(xs) = Xenstore::open() else {
            return;
        };
        if let Ok((ctx, domid)) = self.running_domain(pod) {
            for slot in xs.directory(&members_dir(domid)).unwrap_or_default() {
                let Some(slot) = slot
                    .parse::<u32>()
                    .ok()
                    .filter(|s| *s <= MAX_XEN_MEMBER_SLOT)
                else {
                    continue;
                };
                let node = slot_node(domid, slot);
                if xs.read(&node).ok().flatten().as_deref() == Some(m.id.as_bytes()) {
                    remove(&ctx, &xs, domid, slot);
                    let _ = xs.rm(&node);
                }
            }
        }
        // A hotplug helper interrupted with its keeper leaves a loop device no vbd holds.
        sweep_loops(Some(&xs), &own_files(m));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_slots_take_two_letter_vdevs_above_the_boot_disks() {
        assert_eq!((vdev(0, 0), vdev(0, 1)), ("xvdaa".into(), "xvdab".into()));
        assert_eq!((vdev(1, 0), vdev(1, 1)), ("xvdac".into(), "xvdad".into()));
        let last = vdev(MAX_XEN_MEMBER_SLOT, 1);
        assert_eq!(xen_bindings::config::vdev_index(&last), Some(537));
        // Volumes: three letters, eight per slot.
        assert_eq!((vdev(0, 2), vdev(0, 9)), ("xvdaaa".into(), "xvdaah".into()));
        assert_eq!(vdev(1, 2), "xvdaai");
    }

    #[test]
    fn a_members_disks_go_image_layer_then_volumes_in_order() {
        let vol = |p: &str, readonly| crate::backend::pod::MemberVolume {
            disk: 7,
            path: p.into(),
            readonly,
        };
        let m = MemberFiles {
            id: "ab".into(),
            rootfs: "/i".into(),
            upper: None,
            shares: vec![],
            volumes: vec![vol("/v1", false), vol("/v2", true)],
        };
        let got: Vec<_> = disks(&m).collect();
        assert_eq!(
            got,
            [
                (0, Path::new("/i"), true),
                (2, Path::new("/v1"), false),
                (3, Path::new("/v2"), true)
            ]
        );
        assert_eq!(own_files(&m), [PathBuf::from("/v1"), "/v2".into()]);
    }

    #[test]
    fn a_slot_is_claimed_once() {
        let fake = super::super::FakeStore::start();
        assert!(claim(&fake.xs, 7, 0, "aa").unwrap());
        assert!(!claim(&fake.xs, 7, 0, "bb").unwrap());
        assert!(claim(&fake.xs, 7, 1, "bb").unwrap());
        assert_eq!(
            fake.xs.read(&slot_node(7, 0)).unwrap().as_deref(),
            Some(&b"aa"[..])
        );
    }
}
