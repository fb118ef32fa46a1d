//! hx's own vbd hotplug helper, used instead of libxl's `block` script unless the config file
//! says `[xen] hotplug = "block"`: libxl runs `<root>/assets/hx-vbd-hotplug add|remove` (a symlink
//! to the hx binary; `main` dispatches on argv[0]) with `XENBUS_PATH` set to the vbd's backend
//! directory. `add` attaches the backing file to a free loop device with two ioctls (read-only
//! when the backend's mode is `r`) and writes `physical-device` for blkback; `remove` detaches
//! it (LOOP_CLR_FD on a device blkback still holds marks it autoclear). Not autoclear from the
//! start: the helper's own fd is the last one until blkback opens the device, and the loop
//! would be gone (or rebound to another disk) by then — seen in the lab. No shell, no
//! losetup, no sharing checks: hx owns these files. The `block` script's cost under TCG is most
//! of a domain's build and teardown time (docs/architecture.md).
use anyhow::{bail, Context};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use xen_bindings::Xenstore;

pub const NAME: &str = "hx-vbd-hotplug";

const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LOOP_SET_FD: libc::c_ulong = 0x4C00;
const LOOP_CLR_FD: libc::c_ulong = 0x4C01;

/// The helper's path: a symlink to this binary in `<root>/assets`, made on first use.
pub fn script_path(root: &Path) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the hx binary")?;
    let dir = root.join("assets");
    std::fs::create_dir_all(&dir)?;
    let link = dir.join(NAME);
    if std::fs::read_link(&link).ok().as_deref() != Some(exe.as_path()) {
        let tmp = dir.join(format!(".{NAME}.{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&exe, &tmp)?;
        std::fs::rename(&tmp, &link)?;
    }
    Ok(link)
}

/// `main`'s dispatch: Some(exit code) when hx was invoked as the hotplug helper.
pub fn from_argv0() -> Option<i32> {
    let argv0 = std::env::args_os().next()?;
    if Path::new(&argv0).file_name()? != NAME {
        return None;
    }
    let action = std::env::args().nth(1).unwrap_or_default();
    let be = std::env::var("XENBUS_PATH").unwrap_or_default();
    Some(match run(&action, &be) {
        Ok(()) => 0,
        Err(e) => {
            let msg = format!("{e:#}");
            eprintln!("{NAME}: {msg}");
            // libxl reports the backend's hotplug-error node on failure.
            if let Ok(xs) = Xenstore::open() {
                let _ = xs.write(&format!("{be}/hotplug-error"), msg.as_bytes());
            }
            1
        }
    })
}

/// libxl passes the backend directory relative to dom0's home (`backend/vbd/<domid>/<dev>`).
fn backend_dir(xenbus_path: &str) -> anyhow::Result<String> {
    let abs = match xenbus_path.strip_prefix('/') {
        Some(_) => xenbus_path.to_string(),
        None => format!("/local/domain/0/{xenbus_path}"),
    };
    let rest = abs.strip_prefix("/local/domain/0/backend/vbd/").unwrap_or("");
    let parts: Vec<&str> = rest.split('/').collect();
    if parts.len() != 2 || !parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())) {
        bail!("XENBUS_PATH {xenbus_path:?} is not a vbd backend of dom0");
    }
    Ok(abs)
}

fn run(action: &str, xenbus_path: &str) -> anyhow::Result<()> {
    let be = backend_dir(xenbus_path)?;
    let be = be.as_str();
    let xs = Xenstore::open()?;
    match action {
        "add" => {
            let params = read(&xs, be, "params")?;
            let mode = read(&xs, be, "mode")?;
            let (dev, path) = attach(Path::new(&params), mode != "w")?;
            xs.write(&format!("{be}/physical-device-path"), path.as_bytes())?;
            xs.write(
                &format!("{be}/physical-device"),
                format!("{:x}:{:x}", libc::major(dev), libc::minor(dev)).as_bytes(),
            )?;
            xs.write(&format!("{be}/hotplug-status"), b"connected")?;
            Ok(())
        }
        "remove" => {
            if let Ok(path) = read(&xs, be, "physical-device-path") {
                detach(Path::new(&path));
            }
            Ok(())
        }
        other => bail!("unknown action {other:?} (add or remove)"),
    }
}

fn read(xs: &Xenstore, be: &str, key: &str) -> anyhow::Result<String> {
    let v = xs
        .read(&format!("{be}/{key}"))?
        .ok_or_else(|| anyhow::anyhow!("{be}/{key} missing"))?;
    Ok(String::from_utf8(v)?)
}

/// A loop device over `file`; returns its dev_t and path. Retries when another process takes
/// the free device first.
fn attach(file: &Path, readonly: bool) -> anyhow::Result<(libc::dev_t, String)> {
    let backing = std::fs::OpenOptions::new()
        .read(true)
        .write(!readonly)
        .open(file)
        .with_context(|| format!("{}", file.display()))?;
    if backing.metadata()?.file_type().is_block_device() {
        bail!("{} is a block device: use libxl's block script", file.display());
    }
    let ctl = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/loop-control")
        .context("/dev/loop-control (modprobe loop)")?;
    for _ in 0..16 {
        // SAFETY: ioctls on fds we own with the documented argument types.
        let n = unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE) };
        if n < 0 {
            return Err(std::io::Error::last_os_error()).context("LOOP_CTL_GET_FREE");
        }
        let path = format!("/dev/loop{n}");
        let dev = std::fs::OpenOptions::new()
            .read(true)
            .write(!readonly)
            .open(&path)
            .with_context(|| path.clone())?;
        // SAFETY: as above.
        if unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_SET_FD, backing.as_raw_fd()) } < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EBUSY) {
                continue;
            }
            return Err(e).with_context(|| format!("LOOP_SET_FD {path}"));
        }
        let rdev = dev.metadata()?.rdev();
        return Ok((rdev, path));
    }
    bail!("no free loop device after 16 tries")
}

fn detach(path: &Path) {
    if let Ok(dev) = std::fs::File::open(path) {
        // SAFETY: ioctl on an fd we own; ENXIO (already detached) is fine.
        unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CLR_FD, 0) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_anything_but_a_dom0_vbd_backend() {
        assert_eq!(backend_dir("backend/vbd/2/51728").unwrap(), "/local/domain/0/backend/vbd/2/51728");
        assert_eq!(backend_dir("/local/domain/0/backend/vbd/2/51728").unwrap(), "/local/domain/0/backend/vbd/2/51728");
        for bad in ["", "/local/domain/5/data", "backend/vbd/2", "backend/vbd/2/51728/x", "backend/vbd/../51728", "backend/vif/2/0"] {
            assert!(run("add", bad).unwrap_err().to_string().contains("not a vbd backend"), "{bad}");
        }
    }

    #[test]
    fn the_script_is_a_symlink_to_hx_in_the_store() {
        let d = tempfile::tempdir().unwrap();
        let p = script_path(d.path()).unwrap();
        assert_eq!(p.file_name().unwrap(), NAME);
        assert_eq!(std::fs::read_link(&p).unwrap(), std::env::current_exe().unwrap());
        assert_eq!(script_path(d.path()).unwrap(), p);
    }
}
