//! Finding the guest's disks and channels, on QEMU (virtio) and Xen (blkfront, PV consoles).
use crate::InitError;
use pv_init::spec::ContainerSpec;
use std::fs;
use std::io::Read;
use std::path::PathBuf;

pub struct Disks {
    /// index → device path
    by_index: Vec<(u32, PathBuf)>,
}

impl Disks {
    /// Virtio disks carry serial `hx-disk<N>`; Xen disks (xvd*) are numbered in name order.
    pub fn find() -> Result<Self, InitError> {
        let mut names: Vec<String> = fs::read_dir("/sys/block")
            .map_err(|e| InitError::setup(format!("/sys/block: {e}")))?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.starts_with("vd") || n.starts_with("xvd"))
            .collect();
        names.sort_by_key(|n| (n.len(), n.clone()));
        let mut by_index = Vec::new();
        for (pos, name) in names.iter().enumerate() {
            let serial = fs::read_to_string(format!("/sys/block/{name}/serial")).unwrap_or_default();
            let index = match serial.trim().strip_prefix("hx-disk").and_then(|n| n.parse().ok()) {
                Some(i) => i,
                None => pos as u32,
            };
            by_index.push((index, PathBuf::from(format!("/dev/{name}"))));
        }
        Ok(Disks { by_index })
    }

    pub fn path(&self, index: u32) -> Result<&PathBuf, InitError> {
        self.by_index
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, p)| p)
            .ok_or_else(|| InitError::setup(format!("disk {index} not found (have {:?})", self.by_index)))
    }

    pub fn read_spec(&self) -> Result<ContainerSpec, InitError> {
        let path = self.path(1)?;
        let mut f = fs::File::open(path).map_err(|e| InitError::setup(format!("config disk {}: {e}", path.display())))?;
        let mut head = vec![0u8; 12];
        f.read_exact(&mut head).map_err(|e| InitError::setup(format!("config disk: {e}")))?;
        let len = u32::from_le_bytes(head[8..12].try_into().unwrap()) as usize;
        let mut rest = vec![0u8; len.min(pv_init::spec::CONFIG_MAX_JSON)];
        let _ = f.read_exact(&mut rest);
        head.extend_from_slice(&rest);
        ContainerSpec::from_config_disk(&head).map_err(|e| InitError::setup(e.to_string()))
    }
}

pub struct Channels {
    pub stdout: fs::File,
    pub stderr: fs::File,
    pub status: fs::File,
    pub control: fs::File,
}

impl Channels {
    pub fn find() -> Result<Self, InitError> {
        let mut found: Vec<(String, PathBuf)> = Vec::new();
        // QEMU: virtio-serial ports, named by the host.
        if let Ok(rd) = fs::read_dir("/sys/class/virtio-ports") {
            for e in rd.flatten() {
                if let Ok(name) = fs::read_to_string(e.path().join("name")) {
                    found.push((name.trim().to_string(), PathBuf::from("/dev").join(e.file_name())));
                }
            }
        }
        let open = |want: &str, write: bool| -> Result<fs::File, InitError> {
            let path = found
                .iter()
                .find(|(n, _)| n == want)
                .map(|(_, p)| p.clone())
                .ok_or_else(|| InitError::setup(format!("channel {want} not found (have {:?})", found.iter().map(|f| &f.0).collect::<Vec<_>>())))?;
            fs::OpenOptions::new()
                .read(!write)
                .write(write)
                .open(&path)
                .map_err(|e| InitError::setup(format!("channel {want} ({}): {e}", path.display())))
        };
        Ok(Channels { stdout: open("hx.stdout", true)?, stderr: open("hx.stderr", true)?, status: open("hx.status", true)?, control: open("hx.control", false)? })
    }
}
