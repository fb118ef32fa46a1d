//! Container log files: written capped and rotated (like docker's json-file `max-size` and
//! `max-file`), read from the end and followed across rotations, in memory independent of
//! their size. A guest decides how much it writes, never how much of dom0's disk or of hx's
//! memory that takes.
//!
//! `stdout.log` is the newest file; `stdout.log.1` .. `stdout.log.<max_file - 1>` are older
//! ones. A rotation renames the current file to `.1` (shifting the others) and starts an empty
//! one, so readers holding the old file finish it and then move to the new one.
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The caps of one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes per file.
    pub max_size: u64,
    /// Files kept, the current one included (1: the file is emptied when full).
    pub max_file: u32,
}

/// The workload's stdout and stderr (`[log]` in the config file overrides them).
pub const OUTPUT: Limits = Limits {
    max_size: 10 << 20,
    max_file: 2,
};
/// Kernel messages and pv-init's diagnostics (QEMU's serial console).
pub const CONSOLE: Limits = Limits {
    max_size: 1 << 20,
    max_file: 2,
};
/// pv-init's status lines: a few hundred bytes when the guest is honest.
pub const STATUS: Limits = Limits {
    max_size: 64 << 10,
    max_file: 2,
};

/// A size such as `10m`, `512k`, `1g` or a number of bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, shift) = match t.char_indices().last() {
        Some((i, 'k')) => (&t[..i], 10),
        Some((i, 'm')) => (&t[..i], 20),
        Some((i, 'g')) => (&t[..i], 30),
        _ => (t, 0),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .filter(|n| *n >= 1024)
        .ok_or_else(|| format!("invalid log size {s:?} (e.g. 10m, 512k; at least 1k)"))
}

/// `path.N`, the N-th older file of `path`.
/// The log files of a VM about to boot in `dir`: `kept` ones (the workload's output, which
/// `hx logs` shows across restarts like docker's) are created if missing and appended to;
/// `fresh` ones (status, kernel console: read to tell how this run ended) start empty, their
/// rotated copies removed.
pub fn begin_run(dir: &Path, kept: &[&str], fresh: &[&str]) -> io::Result<()> {
    for name in kept {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(name))?;
    }
    for name in fresh {
        let p = dir.join(name);
        std::fs::File::create(&p)?;
        for n in 1..=MAX_ROTATED {
            let _ = std::fs::remove_file(rotated(&p, n));
        }
    }
    Ok(())
}

/// More rotated copies than any limit keeps (`[log] max_file` is at most 20).
const MAX_ROTATED: u32 = 100;

pub fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// Writes a stream to `path` within `limits`. Rotates at a line end when the chunk has one, so
/// a line is rarely split across files.
pub struct RotatingWriter {
    path: PathBuf,
    file: File,
    size: u64,
    limits: Limits,
}

impl RotatingWriter {
    /// Appends to `path` (created if missing), counting what is already there.
    pub fn open(path: &Path, limits: Limits) -> io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let size = file.metadata()?.len();
        Ok(RotatingWriter {
            path: path.to_path_buf(),
            file,
            size,
            limits,
        })
    }

    pub fn write(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let room = self.limits.max_size.saturating_sub(self.size) as usize;
            if data.len() <= room {
                self.file.write_all(data)?;
                self.size += data.len() as u64;
                return Ok(());
            }
            // Fill up to the last line end that fits, else to the cap; then rotate.
            let cut = match data[..room].iter().rposition(|&b| b == b'\n') {
                Some(i) => i + 1,
                None if self.size > 0 && data[room..].contains(&b'\n') => 0,
                None => room,
            };
            self.file.write_all(&data[..cut])?;
            data = &data[cut..];
            self.rotate()?;
        }
        Ok(())
    }

    /// Bytes the current file takes before it is full.
    pub fn room(&self) -> u64 {
        self.limits.max_size.saturating_sub(self.size)
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Writes `data` into the current file as it is, without a rotation inside it (the caller
    /// checked `room`).
    pub fn write_whole(&mut self, data: &[u8]) -> io::Result<()> {
        self.file.write_all(data)?;
        self.size += data.len() as u64;
        Ok(())
    }

    pub fn rotate(&mut self) -> io::Result<()> {
        if self.limits.max_file <= 1 {
            self.file.set_len(0)?;
        } else {
            for n in (1..self.limits.max_file - 1).rev() {
                let _ = std::fs::rename(rotated(&self.path, n), rotated(&self.path, n + 1));
            }
            std::fs::rename(&self.path, rotated(&self.path, 1))?;
            self.file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
        }
        self.size = 0;
        Ok(())
    }
}

/// The stream's files that exist, oldest first. A symlink (Xen's stdout.log → console.log)
/// is followed, so its target's older files are found.
pub fn files(path: &Path) -> Vec<PathBuf> {
    let base = match std::fs::read_link(path) {
        Ok(t) if t.is_relative() => path.parent().map_or(t.clone(), |d| d.join(&t)),
        Ok(t) => t,
        Err(_) => path.to_path_buf(),
    };
    let mut older: Vec<PathBuf> = (1..100)
        .map(|n| rotated(&base, n))
        .take_while(|p| p.is_file())
        .collect();
    older.reverse();
    older.push(path.to_path_buf());
    older.retain(|p| p.is_file());
    older
}

const CHUNK: usize = 64 << 10;

/// Copies the stream's last `lines` lines (all of it for None), its older files included, to
/// `out`. Reads backwards from the end for `lines`, so the memory used is a fixed buffer
/// whatever the files' size. Returns the length of the newest file read, for following.
pub fn copy_tail(path: &Path, lines: Option<usize>, out: &mut dyn Write) -> io::Result<u64> {
    let files = files(path);
    let mut opened = Vec::new();
    for p in &files {
        let f = File::open(p)?;
        let len = f.metadata()?.len();
        opened.push((f, len));
    }
    // Where to start: (file index, offset).
    let mut start = (0, 0);
    if lines == Some(0) {
        start = (
            opened.len().saturating_sub(1),
            opened.last().map_or(0, |o| o.1),
        );
    } else if let Some(n) = lines {
        start = (opened.len(), 0);
        let mut seen = 0usize;
        let mut last_byte = true;
        let mut buf = vec![0u8; CHUNK];
        'files: for (i, (f, len)) in opened.iter_mut().enumerate().rev() {
            let mut end = *len;
            while end > 0 {
                let at = end.saturating_sub(CHUNK as u64);
                let chunk = &mut buf[..(end - at) as usize];
                f.seek(SeekFrom::Start(at))?;
                f.read_exact(chunk)?;
                for (j, &b) in chunk.iter().enumerate().rev() {
                    // The stream's final newline ends the last line rather than starting one.
                    if b == b'\n' && !std::mem::take(&mut last_byte) {
                        seen += 1;
                        if seen == n {
                            start = (i, at + j as u64 + 1);
                            break 'files;
                        }
                    }
                    last_byte = false;
                }
                end = at;
            }
            start = (i, 0);
        }
    }
    let mut newest = 0;
    for (i, (f, len)) in opened.iter_mut().enumerate().skip(start.0) {
        let from = if i == start.0 { start.1 } else { 0 };
        f.seek(SeekFrom::Start(from))?;
        io::copy(&mut Read::take(&mut *f, *len - from), out)?;
        newest = *len;
    }
    Ok(newest)
}

/// The last `max` bytes of a file (empty if it cannot be read).
pub fn read_end(path: &Path, max: u64) -> Vec<u8> {
    let mut out = Vec::new();
    if let Ok(mut f) = File::open(path) {
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if f.seek(SeekFrom::Start(len.saturating_sub(max))).is_ok() {
            let _ = f.take(max).read_to_end(&mut out);
        }
    }
    out
}

/// Follows a growing log file, copying new bytes to `out`; moves on to the new file when the
/// writer rotates (or starts over when it empties the file).
pub struct Tail {
    path: PathBuf,
    file: File,
    pos: u64,
}

impl Tail {
    /// From byte `pos` on (the file's length before a restart: only the new run's output).
    pub fn open_at(p: &Path, pos: u64) -> anyhow::Result<Self> {
        let mut t = Tail::open(p, true)?;
        t.pos = pos.min(t.file.metadata()?.len());
        Ok(t)
    }

    pub fn open(p: &Path, from_start: bool) -> anyhow::Result<Self> {
        use anyhow::Context;
        let mut file = File::open(p).with_context(|| format!("opening {}", p.display()))?;
        let pos = if from_start {
            0
        } else {
            file.seek(SeekFrom::End(0))?
        };
        Ok(Tail {
            path: p.to_path_buf(),
            file,
            pos,
        })
    }

    pub fn pos_hint(&self) -> u64 {
        self.pos
    }

    pub fn set_pos(&mut self, pos: u64) {
        self.pos = pos;
    }

    fn drain(&mut self, out: &mut dyn Write) -> io::Result<bool> {
        if self.file.metadata()?.len() < self.pos {
            self.pos = 0;
        }
        self.file.seek(SeekFrom::Start(self.pos))?;
        let mut buf = vec![0u8; CHUNK];
        let mut any = false;
        loop {
            let n = self.file.read(&mut buf)?;
            if n == 0 {
                return Ok(any);
            }
            any = true;
            self.pos += n as u64;
            out.write_all(&buf[..n])?;
        }
    }

    pub fn pump(&mut self, out: &mut dyn Write) -> anyhow::Result<bool> {
        let mut any = self.drain(out)?;
        // Rotated: the old file is complete (the writer renamed it before writing on), so
        // after draining it the new file is read from its start.
        if let (Ok(now), Ok(mine)) = (std::fs::metadata(&self.path), self.file.metadata()) {
            if (now.dev(), now.ino()) != (mine.dev(), mine.ino()) {
                if let Ok(f) = File::open(&self.path) {
                    any |= self.drain(out)?;
                    self.file = f;
                    self.pos = 0;
                    any |= self.drain(out)?;
                }
            }
        }
        out.flush()?;
        Ok(any)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap_or_default()
    }

    #[test]
    fn the_writer_caps_each_file_and_keeps_the_newest_lines() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("stdout.log");
        let limits = Limits {
            max_size: 1024,
            max_file: 3,
        };
        let mut w = RotatingWriter::open(&p, limits).unwrap();
        let mut all = String::new();
        for i in 0..2000 {
            let l = format!("line {i}\n");
            all.push_str(&l);
            w.write(l.as_bytes()).unwrap();
        }
        // One oversized chunk without newlines is cut at the cap.
        w.write(&[b'x'; 5000]).unwrap();
        for f in files(&p) {
            assert!(
                std::fs::metadata(&f).unwrap().len() <= 1024,
                "{}",
                f.display()
            );
        }
        assert!(!rotated(&p, 3).exists());
        assert_eq!(files(&p).len(), 3);
        // Every file but the newest ends at a line end or the cap.
        let kept = format!("{}{}", read(&rotated(&p, 2)), read(&rotated(&p, 1)));
        assert!(kept.starts_with("line ") || kept.starts_with('x'));
        let mut out = Vec::new();
        copy_tail(&p, Some(1), &mut out).unwrap();
        // The last line is the unterminated run of x, cut into files of at most the cap.
        assert!(out.iter().all(|&b| b == b'x') && !out.is_empty() && out.len() <= 5000);

        // max_file 1: the file is emptied when full.
        let q = d.path().join("status.log");
        let mut w = RotatingWriter::open(
            &q,
            Limits {
                max_size: 1024,
                max_file: 1,
            },
        )
        .unwrap();
        for _ in 0..100 {
            w.write(b"0123456789abcdef\n").unwrap();
        }
        assert!(std::fs::metadata(&q).unwrap().len() <= 1024);
        assert_eq!(files(&q), vec![q.clone()]);
    }

    #[test]
    fn tail_lines_come_from_the_end_across_rotated_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("stdout.log");
        std::fs::write(rotated(&p, 1), "a\nb\nc").unwrap();
        std::fs::write(&p, "d\ne\n").unwrap();
        let tail = |n| {
            let mut out = Vec::new();
            copy_tail(&p, n, &mut out).unwrap();
            String::from_utf8(out).unwrap()
        };
        assert_eq!(tail(Some(1)), "e\n");
        // The older file's unterminated "c" and "d" are one line of the stream.
        assert_eq!(tail(Some(2)), "cd\ne\n");
        assert_eq!(tail(Some(3)), "b\ncd\ne\n");
        assert_eq!(tail(Some(4)), "a\nb\ncd\ne\n");
        assert_eq!(tail(Some(10)), "a\nb\ncd\ne\n");
        assert_eq!(tail(None), "a\nb\ncd\ne\n");
        assert_eq!(tail(Some(0)), "");
        std::fs::write(&p, "no newline").unwrap();
        assert_eq!(tail(Some(1)), "cno newline");
        // Xen: stdout.log is a symlink to console.log, whose older files count.
        let c = d.path().join("console.log");
        std::fs::write(rotated(&c, 1), "old\n").unwrap();
        std::fs::write(&c, "new\n").unwrap();
        let s = d.path().join("xen-stdout.log");
        std::os::unix::fs::symlink("console.log", &s).unwrap();
        let mut out = Vec::new();
        copy_tail(&s, Some(2), &mut out).unwrap();
        assert_eq!(out, b"old\nnew\n");
    }

    #[test]
    fn a_follower_reads_every_byte_across_rotations() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("stdout.log");
        let mut w = RotatingWriter::open(
            &p,
            Limits {
                max_size: 4096,
                max_file: 2,
            },
        )
        .unwrap();
        let mut t = Tail::open(&p, true).unwrap();
        let (mut expect, mut got) = (Vec::new(), Vec::new());
        for i in 0..3000 {
            let l = format!("{i}\n");
            expect.extend_from_slice(l.as_bytes());
            w.write(l.as_bytes()).unwrap();
            // Followers poll often enough to be at most one rotation behind.
            if i % 100 == 0 {
                t.pump(&mut got).unwrap();
            }
        }
        t.pump(&mut got).unwrap();
        assert_eq!(
            String::from_utf8(got).unwrap(),
            String::from_utf8(expect).unwrap()
        );
    }

    #[test]
    fn sizes_parse_like_docker_max_size() {
        assert_eq!(parse_size("10m"), Ok(10 << 20));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("10").is_err());
        assert!(parse_size("x").is_err());
        assert!(parse_size("99999999999g").is_err());
    }
}
