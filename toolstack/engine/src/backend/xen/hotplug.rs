//! hx's own hotplug helpers, used instead of libxl's `block` and `vif-bridge` scripts unless the
//! config file says `[xen] hotplug = "block"`. libxl runs `<root>/assets/hx-vbd-hotplug
//! add|remove` and `<root>/assets/hx-vif-hotplug online|offline` (symlinks to the hx binary;
//! `main` dispatches on argv[0]) with `XENBUS_PATH` set to the device's backend directory.
//!
//! vbd: `add` attaches the backing file to a free loop device with two ioctls (read-only
//! when the backend's mode is `r`) and writes `physical-device` for blkback; `remove` detaches
//! it (LOOP_CLR_FD on a device blkback still holds marks it autoclear). Not autoclear from the
//! start: the helper's own fd is the last one until blkback opens the device, and the loop
//! would be gone (or rebound to another disk) by then — seen in the lab. No shell, no
//! losetup, no sharing checks: hx owns these files. The `block` script's cost under TCG is most
//! of a domain's build and teardown time (docs/architecture.md).
//!
//! vif: what vif-bridge does for hx's bridges, in one `ip -batch` process instead of a bash
//! script that sources three others and forks dozens of times: the vif gets fe:ff:ff:ff:ff:ff
//! (so the bridge never takes the guest-facing port's address as its own), no addresses, the
//! bridge's MTU, joins the bridge, goes up; then `hotplug-status = connected`, which netback
//! waits for before it connects the guest. `offline` needs nothing: the vif is gone with the
//! domain and libxl removes the backend directory.
//!
//! A VM that takes over a network namespace's interface (docker's `eth0`, `--network ns:PATH`)
//! has no bridge: the monitor that creates the domain sets `HX_VIF_NETNS` (the namespace's
//! path) and `HX_VIF_LINK` (`hxtap0=eth0,hxtap1=eth1`: which interface each vif takes over,
//! by the name its `bridge` node gives it), which libxl's child inherits, and `online` moves
//! the vif out of dom0's namespace into that one under that name, mirrored to the interface
//! (`netns_link::adopt_link`) before netback connects the guest.
use anyhow::{bail, Context};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use xen_bindings::Xenstore;

pub const VBD: &str = "hx-vbd-hotplug";
pub const VIF: &str = "hx-vif-hotplug";
/// The monitor's environment for a vif that takes over a namespace's interface.
pub const VIF_NETNS_ENV: &str = "HX_VIF_NETNS";
pub const VIF_LINK_ENV: &str = "HX_VIF_LINK";

const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LOOP_SET_FD: libc::c_ulong = 0x4C00;
const LOOP_CLR_FD: libc::c_ulong = 0x4C01;

/// A helper's path (`VBD` or `VIF`): a symlink to this binary in `<root>/assets`, made on
/// first use.
pub fn script_path(root: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the hx binary")?;
    let dir = root.join("assets");
    std::fs::create_dir_all(&dir)?;
    let link = dir.join(name);
    if std::fs::read_link(&link).ok().as_deref() != Some(exe.as_path()) {
        let tmp = dir.join(format!(".{name}.{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&exe, &tmp)?;
        std::fs::rename(&tmp, &link)?;
    }
    Ok(link)
}

/// `main`'s dispatch: Some(exit code) when hx was invoked as the hotplug helper.
pub fn from_argv0() -> Option<i32> {
    let argv0 = std::env::args_os().next()?;
    let name = Path::new(&argv0).file_name()?.to_str()?;
    if name != VBD && name != VIF {
        return None;
    }
    let action = std::env::args().nth(1).unwrap_or_default();
    let xenbus_path = std::env::var("XENBUS_PATH").unwrap_or_default();
    let result = if name == VBD {
        run(&action, &xenbus_path)
    } else {
        run_vif(
            &action,
            &xenbus_path,
            &std::env::var("vif").unwrap_or_default(),
        )
    };
    let be = absolute(&xenbus_path);
    Some(match result {
        Ok(()) => 0,
        Err(e) => {
            let msg = format!("{e:#}");
            errln!("{name}: {msg}");
            // libxl reports the backend's hotplug-error node on failure.
            if let Ok(xs) = Xenstore::open() {
                let _ = xs.write(&format!("{be}/hotplug-error"), msg.as_bytes());
            }
            1
        }
    })
}

/// libxl passes the backend directory relative to dom0's home (`backend/vbd/<domid>/<dev>`).
fn absolute(xenbus_path: &str) -> String {
    match xenbus_path.strip_prefix('/') {
        Some(_) => xenbus_path.to_string(),
        None => format!("/local/domain/0/{xenbus_path}"),
    }
}

/// The absolute backend directory of a `kind` (vbd, vif) device of dom0.
fn backend_dir(xenbus_path: &str, kind: &str) -> anyhow::Result<String> {
    let abs = absolute(xenbus_path);
    let rest = abs
        .strip_prefix(&format!("/local/domain/0/backend/{kind}/"))
        .unwrap_or("");
    let parts: Vec<&str> = rest.split('/').collect();
    if parts.len() != 2
        || !parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    {
        bail!("XENBUS_PATH {xenbus_path:?} is not a {kind} backend of dom0");
    }
    Ok(abs)
}

fn is_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

fn run_vif(action: &str, xenbus_path: &str, vif: &str) -> anyhow::Result<()> {
    let be = backend_dir(xenbus_path, "vif")?;
    if !is_ifname(vif) {
        bail!("vif name {vif:?} (from libxl's environment) is not an interface name");
    }
    match action {
        "online" | "add" if std::env::var_os(VIF_NETNS_ENV).is_some() => {
            let netns = PathBuf::from(std::env::var_os(VIF_NETNS_ENV).unwrap_or_default());
            if !netns.is_absolute() {
                bail!("{VIF_NETNS_ENV} {netns:?}: not an absolute path");
            }
            let xs = Xenstore::open()?;
            // The vif's "bridge" node names the VM's interface in the namespace (hxtap0...).
            let name = read(&xs, &be, "bridge")?;
            let links = std::env::var(VIF_LINK_ENV).unwrap_or_default();
            let link = link_for(&links, &name)?;
            crate::network::netns_link::adopt_link(
                Path::new("/proc/1/ns/net"),
                &netns,
                link,
                vif,
                &name,
            )?;
            xs.write(&format!("{be}/hotplug-status"), b"connected")?;
            Ok(())
        }
        "online" | "add" => {
            let xs = Xenstore::open()?;
            let bridge = read(&xs, &be, "bridge")?;
            if !is_ifname(&bridge)
                || !Path::new(&format!("/sys/class/net/{bridge}/bridge")).exists()
            {
                bail!("bridge {bridge:?} of {vif} does not exist");
            }
            let mtu = match xs.read(&format!("{be}/mtu"))? {
                Some(m) => String::from_utf8(m)?.trim().to_string(),
                None => std::fs::read_to_string(format!("/sys/class/net/{bridge}/mtu"))?
                    .trim()
                    .to_string(),
            };
            if mtu.parse::<u32>().is_err() {
                bail!("mtu {mtu:?} for {vif} is not a number");
            }
            let batch = format!(
                "link set dev {vif} down\n\
                 link set dev {vif} address fe:ff:ff:ff:ff:ff\n\
                 address flush dev {vif}\n\
                 link set dev {vif} mtu {mtu}\n\
                 link set dev {vif} master {bridge}\n\
                 link set dev {vif} up\n"
            );
            let mut child = std::process::Command::new("ip")
                .args(["-batch", "-"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .context("running ip (iproute2)")?;
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("piped")
                .write_all(batch.as_bytes())?;
            let out = child.wait_with_output()?;
            if !out.status.success() {
                bail!(
                    "ip -batch for {vif}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            xs.write(&format!("{be}/hotplug-status"), b"connected")?;
            Ok(())
        }
        "offline" | "remove" => Ok(()),
        other => bail!("unknown action {other:?} (online or offline)"),
    }
}

/// The namespace's interface that VM interface `name` mirrors, from the monitor's
/// `HX_VIF_LINK` (`hxtap0=eth0,hxtap1=eth1`).
fn link_for<'a>(links: &'a str, name: &str) -> anyhow::Result<&'a str> {
    for pair in links.split(',') {
        let Some((vm, link)) = pair.split_once('=') else {
            bail!("{VIF_LINK_ENV} {links:?}: not NAME=LINK pairs");
        };
        if vm == name {
            if !is_ifname(link) {
                bail!("{VIF_LINK_ENV}: {link:?} is not an interface name");
            }
            return Ok(link);
        }
    }
    bail!("{VIF_LINK_ENV} {links:?} names no interface for {name:?}")
}

fn run(action: &str, xenbus_path: &str) -> anyhow::Result<()> {
    let be = backend_dir(xenbus_path, "vbd")?;
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
        bail!(
            "{} is a block device: use libxl's block script",
            file.display()
        );
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
    fn each_vm_interface_finds_its_namespace_interface() {
        let links = "hxtap0=eth0,hxtap1=eth1";
        assert_eq!(link_for(links, "hxtap0").unwrap(), "eth0");
        assert_eq!(link_for(links, "hxtap1").unwrap(), "eth1");
        assert!(link_for(links, "hxtap2").is_err());
        assert!(link_for("", "hxtap0").is_err());
        assert!(link_for("hxtap0", "hxtap0").is_err());
        assert!(link_for("hxtap0=a/b", "hxtap0").is_err());
    }

    #[test]
    fn refuses_anything_but_a_dom0_vbd_backend() {
        assert_eq!(
            backend_dir("backend/vbd/2/51728", "vbd").unwrap(),
            "/local/domain/0/backend/vbd/2/51728"
        );
        assert_eq!(
            backend_dir("/local/domain/0/backend/vbd/2/51728", "vbd").unwrap(),
            "/local/domain/0/backend/vbd/2/51728"
        );
        for bad in [
            "",
            "/local/domain/5/data",
            "backend/vbd/2",
            "backend/vbd/2/51728/x",
            "backend/vbd/../51728",
            "backend/vif/2/0",
        ] {
            assert!(
                run("add", bad)
                    .unwrap_err()
                    .to_string()
                    .contains("not a vbd backend"),
                "{bad}"
            );
        }
    }

    #[test]
    fn vif_helper_refuses_other_backends_and_odd_names_before_touching_anything() {
        for bad in [
            "backend/vbd/2/51728",
            "backend/vif/2",
            "backend/vif/x/0",
            "/local/domain/3/backend/vif/2/0",
        ] {
            assert!(
                run_vif("online", bad, "vif2.0")
                    .unwrap_err()
                    .to_string()
                    .contains("not a vif backend"),
                "{bad}"
            );
        }
        for bad in ["", "vif2.0; reboot", "a-name-longer-than-15", "vif 2"] {
            assert!(
                run_vif("online", "backend/vif/2/0", bad)
                    .unwrap_err()
                    .to_string()
                    .contains("not an interface name"),
                "{bad:?}"
            );
        }
        assert!(run_vif("offline", "backend/vif/2/0", "vif2.0").is_ok());
    }

    #[test]
    fn the_script_is_a_symlink_to_hx_in_the_store() {
        let d = tempfile::tempdir().unwrap();
        for name in [VBD, VIF] {
            let p = script_path(d.path(), name).unwrap();
            assert_eq!(p.file_name().unwrap(), name);
            assert_eq!(
                std::fs::read_link(&p).unwrap(),
                std::env::current_exe().unwrap()
            );
            assert_eq!(script_path(d.path(), name).unwrap(), p);
        }
    }
}
