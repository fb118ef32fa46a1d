//! A stopped container's files, reached the way a running container's are: a short-lived VM
//! of the container's own disks (its image and writable layer; no network, no volumes) whose
//! workload only waits (`pv_init::hold`), so that pv-init's agent serves `hx cp`, `hx export`
//! and `hx commit` on its exec channel exactly as for a running container — docker's
//! cp/export/commit of a stopped container — while the host never mounts the filesystem a
//! guest wrote. The container's record is not touched: the VM lives in `<container>/offline/`,
//! its host process recorded there (`vm.json`) before it may run, under the container's
//! `Owner` lock, so that no `hx start` races it and a reconcile after its hx died kills it.
use crate::backend::{self, Backend, Disk, VmHandle, VmSpec};
use crate::container::{self, Container, Owner, Status};
use crate::lifecycle::{self, Launch};
use crate::runtime;
use anyhow::{bail, Context};
use hx_images::Store;
use pv_init::status::Control;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const DIR: &str = "offline";
/// How long a stand-in just booted may take to have its exec channel listening: the VM's
/// monitor binds it once the domain runs, after the backend's start has returned.
const SOCKET_WAIT: Duration = Duration::from_secs(60);
const RECORD: &str = "vm.json";
/// How long the stand-in gets to end (sync and power off) after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(20);

#[derive(serde::Serialize, serde::Deserialize)]
struct Record {
    pid: i32,
    pid_start: u64,
    domid: Option<u32>,
}

/// An open offline VM; dropping it stops the VM and removes everything it made.
pub struct OfflineVm {
    root: PathBuf,
    /// The container's record with the offline VM's process in it (what the backend asks).
    vm: Container,
    be: Box<dyn Backend>,
    dir: PathBuf,
    socket: PathBuf,
    _owner: Owner,
}

/// Boots the offline VM of stopped (created or exited) container `key`.
pub fn open(root: &Path, key: &str) -> anyhow::Result<OfflineVm> {
    let store = Store::open(root)?;
    let lock = store.lock()?;
    runtime::reconcile(root)?;
    let c = container::find(root, key)?;
    match c.status {
        Status::Created | Status::Exited => {}
        Status::Running => bail!("container {} is running", c.name),
        Status::Creating => return Err(crate::HxError::Creating(c.name.clone()).into()),
        Status::Starting => return Err(crate::HxError::Starting(c.name.clone()).into()),
    }
    let owner = Owner::acquire(root, &c.id)
        .map_err(|_| anyhow::anyhow!("container {} is in use by another hx", c.name))?;
    let be = backend::for_container(&c, root)?;
    let dir = container::dir(root, &c.id).join(DIR);
    // A stale one (its hx died after the reconcile above looked) is ours to finish now.
    finish(&c, be.as_ref(), &dir);
    std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    drop(lock);
    let mut vm = OfflineVm {
        root: root.to_path_buf(),
        vm: c,
        be,
        socket: PathBuf::new(),
        dir,
        _owner: owner,
    };
    vm.boot()?;
    Ok(vm)
}

impl OfflineVm {
    /// Where `hx cp`/`export`/`commit` reach the guest's agent.
    pub fn exec_socket(&self) -> &Path {
        &self.socket
    }

    fn boot(&mut self) -> anyhow::Result<()> {
        let c = self.vm.clone();
        let c = &c;
        let req = lifecycle::request_of(&self.root, c)?;
        if req.upper_size.is_none() {
            bail!("container {} has no writable layer to open", c.name);
        }
        let store = Store::open(&self.root)?;
        let img = match &req.rootfs {
            Some(path) => lifecycle::supplied_image(&req.image, path),
            None => store
                .find_image(&c.image_id)
                .with_context(|| format!("the image of container {} ({})", c.name, c.image))?,
        };
        let host = crate::hostconfig::load(&self.root)?;
        let launch = Launch::prepare(&self.root, &req, &img, self.be.as_ref(), &host)?;
        let mut spec = lifecycle::build_spec(&req, &img, &lifecycle::hostname_of(&req, &c.id))?;
        spec.args = pv_init::hold::argv();
        // In pv-init's PID namespace: the stand-in is pv-init through /proc/1/exe, and not PID 1.
        spec.init = true;
        // The stand-in is pv-init, reached through /proc/1/exe: only with pv-init's own
        // capabilities (following that link is ptrace's access check).
        spec.capabilities = None;
        spec.no_new_privileges = false;
        spec.seccomp = None;
        spec.env = vec!["PATH=/usr/sbin:/usr/bin:/sbin:/bin".into()];
        spec.cwd = "/".into();
        spec.user = "0:0".into();
        spec.stdin = false;
        spec.tty = None;
        spec.rlimits.clear();
        spec.sysctls.clear();
        spec.mounts.clear();
        spec.network = None;
        let config = self.dir.join("config.img");
        std::fs::write(&config, spec.to_config_disk())?;
        let upper = container::dir(&self.root, &c.id).join(lifecycle::LAYER_FILE);
        lifecycle::check_layer(&upper, &c.name)?;
        let disks = vec![
            Disk {
                path: launch.rootfs.clone(),
                readonly: true,
                durable: false,
            },
            Disk {
                path: config,
                readonly: true,
                durable: false,
            },
            Disk {
                path: upper,
                readonly: false,
                durable: true,
            },
        ];
        let record = |h: &VmHandle| write_record(&self.dir, h);
        let h = self.be.start(&VmSpec {
            id: &c.id,
            name: &c.name,
            dir: &self.dir,
            kernel: &launch.assets.kernel,
            initramfs: &launch.assets.initramfs,
            disks,
            memory_mb: req.memory_mb,
            cpus: req.cpus,
            cpu_limits: Default::default(),
            cpu_group: None,
            nic: None,
            extra_nics: Vec::new(),
            shares: Vec::new(),
            xen_type: launch.xen_type,
            stdin: false,
            hotplug_bus: false,
            on_spawn: &record,
            restore: None,
        })?;
        write_record(&self.dir, &h)?;
        self.vm.pid = Some(h.pid);
        self.vm.pid_start = Some(h.pid_start);
        self.vm.domid = h.domid;
        let Some(socket) = self.be.exec_socket(&self.dir) else {
            bail!("container {}: its backend has no exec channel", c.name);
        };
        let deadline = Instant::now() + SOCKET_WAIT;
        while !socket.exists() {
            if !self.vm.vm_alive() {
                bail!(
                    "container {}: its offline VM ended before its exec channel came up",
                    c.name
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "container {}: its offline VM's exec channel did not come up within {} s",
                    c.name,
                    SOCKET_WAIT.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.socket = socket;
        Ok(())
    }
}

impl Drop for OfflineVm {
    fn drop(&mut self) {
        if self.vm.vm_alive() {
            let _ = self.be.send_control(
                &self.vm,
                &self.dir,
                &Control::Signal(libc::SIGTERM).to_line(),
            );
            let deadline = Instant::now() + STOP_GRACE;
            while self.vm.vm_alive() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        finish(&self.vm, self.be.as_ref(), &self.dir);
    }
}

fn write_record(dir: &Path, h: &VmHandle) -> anyhow::Result<()> {
    let r = Record {
        pid: h.pid,
        pid_start: h.pid_start,
        domid: h.domid,
    };
    hx_images::store::write_atomic(&dir.join(RECORD), &serde_json::to_vec(&r)?)?;
    Ok(())
}

/// Ends the offline VM recorded in `dir` (if any) and removes `dir`.
fn finish(c: &Container, be: &dyn Backend, dir: &Path) {
    if !dir.exists() {
        return;
    }
    let mut vm = c.clone();
    if let Some(r) = std::fs::read(dir.join(RECORD))
        .ok()
        .and_then(|b| serde_json::from_slice::<Record>(&b).ok())
    {
        vm.pid = Some(r.pid);
        vm.pid_start = Some(r.pid_start);
        vm.domid = r.domid;
        if let Err(e) = be.kill(&vm) {
            tracing::warn!("stopping the offline VM of {}: {e:#}", c.name);
        }
    }
    let _ = crate::log_relay::busy(dir, Duration::from_secs(10));
    if let Err(e) = be.cleanup(&vm, dir) {
        tracing::warn!("cleaning up the offline VM of {}: {e:#}", c.name);
    }
    if let Err(e) = std::fs::remove_dir_all(dir) {
        tracing::warn!("removing {}: {e}", dir.display());
    }
}

/// For reconcile (store lock held): the offline VM of a container nobody owns any more (its
/// hx died), ended and removed; with `force` (the container's removal) even one in use.
pub(crate) fn sweep(root: &Path, c: &Container, be: &dyn Backend, force: bool) {
    let dir = container::dir(root, &c.id).join(DIR);
    if dir.exists() && (force || !container::owner_alive(root, &c.id)) {
        finish(c, be, &dir);
    }
}
