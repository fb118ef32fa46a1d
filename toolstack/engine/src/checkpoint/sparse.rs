//! Copies of sparse disk images: only the extents that hold data (SEEK_DATA/SEEK_HOLE), with
//! copy_file_range (a reflink where the filesystem shares extents), the holes left holes. A
//! container's writable layer is a 10 GiB file holding tens of MiB.
use anyhow::Context;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Copies `from` to the new file `to` (which must not exist) and syncs it.
pub fn copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    let src = std::fs::File::open(from).with_context(|| format!("opening {}", from.display()))?;
    let len = src.metadata()?.len();
    let dst = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(to)
        .with_context(|| format!("creating {}", to.display()))?;
    dst.set_len(len)?;
    let mut at: i64 = 0;
    let end = i64::try_from(len)?;
    while at < end {
        let Some(data) = seek(&src, at, libc::SEEK_DATA)? else {
            break;
        };
        let hole = seek(&src, data, libc::SEEK_HOLE)?.unwrap_or(end);
        copy_range(&src, &dst, data, hole)
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
        at = hole;
    }
    dst.sync_all()?;
    Ok(())
}

/// lseek(SEEK_DATA|SEEK_HOLE); None past the last data (ENXIO).
fn seek(f: &std::fs::File, from: i64, whence: libc::c_int) -> std::io::Result<Option<i64>> {
    // SAFETY: lseek on an open descriptor.
    let r = unsafe { libc::lseek(f.as_raw_fd(), from, whence) };
    if r >= 0 {
        return Ok(Some(r));
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ENXIO) {
        Ok(None)
    } else {
        Err(e)
    }
}

fn copy_range(src: &std::fs::File, dst: &std::fs::File, from: i64, to: i64) -> std::io::Result<()> {
    let (mut off_in, mut off_out) = (from, from);
    while off_in < to {
        let want = usize::try_from(to - off_in)
            .unwrap_or(usize::MAX)
            .min(1 << 30);
        // SAFETY: both descriptors are open; the offsets are ours.
        let n = unsafe {
            libc::copy_file_range(
                src.as_raw_fd(),
                &mut off_in,
                dst.as_raw_fd(),
                &mut off_out,
                want,
                0,
            )
        };
        match n {
            n if n > 0 => {}
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            _ => {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};

    #[test]
    fn data_is_copied_and_holes_stay_holes() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let from = d.path().join("a");
        let mut f = std::fs::File::create(&from).unwrap();
        f.set_len(1 << 30).unwrap();
        for (at, byte) in [(0u64, b'a'), (5 << 20, b'b'), ((1 << 30) - 3, b'c')] {
            f.seek(SeekFrom::Start(at)).unwrap();
            f.write_all(&[byte; 3]).unwrap();
        }
        drop(f);
        let to = d.path().join("b");
        copy(&from, &to).unwrap();
        let (a, b) = (std::fs::read(&from).unwrap(), std::fs::read(&to).unwrap());
        assert!(a == b, "the copy differs");
        let m = std::fs::metadata(&to).unwrap();
        assert_eq!(m.len(), 1 << 30);
        assert!(
            m.blocks() * 512 < 16 << 20,
            "holes were filled: {}",
            m.blocks()
        );
        assert!(
            copy(&from, &to).is_err(),
            "an existing target is never overwritten"
        );
    }
}
