//! Unix sockets in a container directory, whatever the directory's length: a socket path must
//! fit in 108 bytes, a store under a long root does not. The path goes through an O_PATH
//! descriptor of this process instead (`/proc/self/fd/N/NAME`), valid while this lives.
use anyhow::Context;
use std::path::{Path, PathBuf};

pub struct ShortPath {
    _dir: std::os::fd::OwnedFd,
    path: PathBuf,
}

impl ShortPath {
    pub fn new(dir: &Path, name: &str) -> anyhow::Result<Self> {
        use std::os::fd::AsRawFd;
        let d = nix::fcntl::open(
            dir,
            nix::fcntl::OFlag::O_PATH
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .with_context(|| format!("{}", dir.display()))?;
        let path = PathBuf::from(format!("/proc/self/fd/{}/{name}", d.as_raw_fd()));
        Ok(ShortPath { _dir: d, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}
