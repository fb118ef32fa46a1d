//! `--sysctl KEY=VALUE`: written to /proc/sys in the guest before the workload starts. The host
//! checks keys against docker's namespaced list; here a key is checked again for its shape (it
//! becomes a path), and a key the kernel lacks or a value it rejects is an error naming the key.
use crate::InitError;
use pv_init::spec::{sysctl_path as path_of, Sysctl};
use std::io::Write;

pub fn apply(sysctls: &[Sysctl]) -> Result<(), InitError> {
    for s in sysctls {
        let path = path_of(&s.key)
            .ok_or_else(|| InitError::setup(format!("sysctl {:?}: not a sysctl key", s.key)))?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| {
                InitError::setup(if e.kind() == std::io::ErrorKind::NotFound {
                    format!("sysctl {}: the guest kernel has no such key", s.key)
                } else {
                    format!("sysctl {}: {path}: {}", s.key, crate::errno_text(&e))
                })
            })?;
        f.write_all(s.value.as_bytes()).map_err(|e| {
            InitError::setup(format!(
                "sysctl {}={:?}: the guest kernel refused the value: {}",
                s.key,
                s.value,
                crate::errno_text(&e)
            ))
        })?;
    }
    Ok(())
}
