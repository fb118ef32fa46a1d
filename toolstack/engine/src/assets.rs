//! The guest's kernel and init: found on disk, the initramfs built from pv-init and cached.
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

pub struct GuestAssets {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
}

fn candidates(file: &str) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            v.push(dir.join("../lib/hx").join(file));
        }
    }
    v.push(PathBuf::from("/usr/local/lib/hx").join(file));
    v.push(PathBuf::from("/usr/lib/hx").join(file));
    v
}

fn locate(what: &str, env: &str, explicit: Option<&Path>, file: &str) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os(env).map(PathBuf::from))
    {
        if p.is_file() {
            return Ok(p);
        }
        bail!(
            "{what} {} does not exist (given by {})",
            p.display(),
            if explicit.is_some() { "--kernel" } else { env }
        );
    }
    candidates(file)
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| anyhow::anyhow!("no {what} found (looked for {file} in <hx dir>/../lib/hx, /usr/local/lib/hx, /usr/lib/hx; set {env}, or run scripts/setup.sh)"))
}

impl GuestAssets {
    /// `kernel_file`: `bzImage` (QEMU, `HX_KERNEL`) or `vmlinux` (Xen, `HX_XEN_KERNEL`).
    pub fn find(root: &Path, kernel: Option<&Path>, kernel_file: &str) -> anyhow::Result<Self> {
        let env = if kernel_file == "vmlinux" {
            "HX_XEN_KERNEL"
        } else {
            "HX_KERNEL"
        };
        let kernel = locate("guest kernel", env, kernel, kernel_file)?;
        let init = locate("pv-init binary", "HX_INIT", None, "pv-init")?;
        let bytes = std::fs::read(&init).with_context(|| format!("reading {}", init.display()))?;
        let cpio = pv_init::initramfs::build_initramfs(&bytes);
        let hash = hex::encode(&<sha2::Sha256 as sha2::Digest>::digest(&cpio)[..8]);
        let dir = root.join("assets");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let initramfs = dir.join(format!("initramfs-{hash}.cpio"));
        if !initramfs.is_file() {
            hx_images::store::write_atomic(&initramfs, &cpio)?;
        }
        Ok(GuestAssets { kernel, initramfs })
    }
}
