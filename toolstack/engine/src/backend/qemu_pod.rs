//! A pod member's disks in a QEMU pod VM (docs/pods.md): `blockdev-add` + `device_add scsi-hd`
//! over QMP on the pod's virtio-scsi bus (`VmSpec::hotplug_bus`), the image at LUN 0 and the
//! writable layer at LUN 1 of the first free SCSI target.
use super::pod::{MemberFiles, FIRST_VOLUME_LUN};
use super::qmp::Qmp;
use crate::container::Container;
use pv_init::mux::MemberDisks;
use std::path::Path;
use std::time::{Duration, Instant};

/// The pod VM's hot-plug bus (qemu.rs adds it for `VmSpec::hotplug_bus`).
pub const BUS: &str = "hxpod";
/// How long a keeper waits for the pod's QMP socket (one client at a time).
const QMP_WAIT: Duration = Duration::from_secs(20);

fn node(id: &str, lun: u32) -> String {
    format!("hxm-{}-{lun}", &id[..12.min(id.len())])
}

fn connect(pod_dir: &Path, wait: Duration) -> anyhow::Result<Qmp> {
    let deadline = Instant::now() + wait;
    loop {
        match Qmp::connect(pod_dir) {
            Ok(q) => return Ok(q),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// The member's disks on the bus, its host paths in the members export (pod_share.rs).
pub fn plug(pod: &Container, pod_dir: &Path, m: &MemberFiles) -> anyhow::Result<MemberDisks> {
    let mut q = connect(pod_dir, QMP_WAIT)?;
    let plugged = plug_on(&mut q, m).and_then(|target| {
        super::pod_share::bind(pod, pod_dir, m)?;
        Ok(target)
    });
    if plugged.is_err() {
        unplug_on(&mut q, &m.id);
        super::pod_share::unbind(pod, pod_dir, &m.id);
    }
    plugged.map(|target| MemberDisks::Scsi { target })
}

/// Best effort: a pod VM that is gone (its socket refuses) has nothing to unplug.
pub fn unplug(pod: &Container, pod_dir: &Path, id: &str) {
    super::pod_share::unbind(pod, pod_dir, id);
    if let Ok(mut q) = connect(pod_dir, Duration::from_secs(2)) {
        unplug_on(&mut q, id);
    }
}

/// The member's disks by LUN: the image (0, read-only), its layer (1), its volumes (from
/// `FIRST_VOLUME_LUN`).
fn luns(m: &MemberFiles) -> Vec<(u32, &Path, bool)> {
    let mut disks = vec![(0, m.rootfs.as_path(), true)];
    if let Some(u) = &m.upper {
        disks.push((1, u.as_path(), false));
    }
    for (i, v) in m.volumes.iter().enumerate() {
        disks.push((FIRST_VOLUME_LUN + i as u32, v.path.as_path(), v.readonly));
    }
    disks
}

fn plug_on(q: &mut Qmp, m: &MemberFiles) -> anyhow::Result<u32> {
    let id = &m.id;
    let disks = luns(m);
    for (lun, path, readonly) in &disks {
        q.execute_with(
            "blockdev-add",
            Some(serde_json::json!({
                "driver": "raw",
                "node-name": node(id, *lun),
                "read-only": readonly,
                // A volume's writes must reach the host's disk (the next container reads it);
                // the image and the layer are like the boot disks' cache=unsafe.
                "cache": {"no-flush": *lun < FIRST_VOLUME_LUN},
                "file": {"driver": "file", "filename": path},
            })),
        )?;
    }
    let bus = format!("{BUS}.0");
    let device = |target: u32, lun: u32| {
        serde_json::json!({
            "driver": "scsi-hd", "id": node(id, lun), "drive": node(id, lun),
            "bus": bus, "channel": 0, "scsi-id": target, "lun": lun,
        })
    };
    let mut last = None;
    for target in 0..=pv_init::mux::MAX_MEMBER_TARGET {
        // LUN 0 claims the target; the member's other disks follow on it.
        match q.execute_with("device_add", Some(device(target, 0))) {
            Ok(_) => {
                for (lun, _, _) in &disks[1..] {
                    q.execute_with("device_add", Some(device(target, *lun)))?;
                }
                return Ok(target);
            }
            // That target is another member's: the next one.
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no free SCSI target")))
}

/// Removes the member's devices and block nodes from the pod's VM (best effort: those that
/// are there, whatever its plan said).
fn unplug_on(q: &mut Qmp, id: &str) {
    let all: Vec<u32> = (0..FIRST_VOLUME_LUN + crate::volume::MAX_MOUNTS as u32)
        .rev()
        .collect();
    let mut present = Vec::new();
    for &lun in &all {
        match q.execute_with("device_del", Some(serde_json::json!({"id": node(id, lun)}))) {
            Ok(_) => present.push(lun),
            Err(e) if e.to_string().contains("not found") => {}
            Err(_) => present.push(lun),
        }
    }
    for &lun in &all {
        // The device goes first; its node is in use until then.
        for _ in 0..if present.contains(&lun) { 50 } else { 1 } {
            match q.execute_with(
                "blockdev-del",
                Some(serde_json::json!({"node-name": node(id, lun)})),
            ) {
                Ok(_) => break,
                Err(e) if e.to_string().contains("Failed to find") => break,
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}
