//! The initramfs hx boots every guest with: just `/init` (pv-init) and `/dev/console`, as a newc
//! cpio. Deterministic bytes, so its hash can key a cache.

struct Entry<'a> {
    name: &'a str,
    mode: u32,
    rdev: (u32, u32),
    data: &'a [u8],
}

/// Builds the cpio archive around a static pv-init binary.
pub fn build_initramfs(init_binary: &[u8]) -> Vec<u8> {
    let entries = [
        Entry {
            name: "dev",
            mode: 0o040755,
            rdev: (0, 0),
            data: &[],
        },
        Entry {
            name: "dev/console",
            mode: 0o020600,
            rdev: (5, 1),
            data: &[],
        },
        Entry {
            name: "init",
            mode: 0o100755,
            rdev: (0, 0),
            data: init_binary,
        },
    ];
    let mut out = Vec::with_capacity(init_binary.len() + 1024);
    for (ino, e) in entries.iter().enumerate() {
        push_entry(&mut out, ino as u32 + 1, e);
    }
    push_entry(
        &mut out,
        0,
        &Entry {
            name: "TRAILER!!!",
            mode: 0,
            rdev: (0, 0),
            data: &[],
        },
    );
    while out.len() % 512 != 0 {
        out.push(0);
    }
    out
}

fn push_entry(out: &mut Vec<u8>, ino: u32, e: &Entry) {
    let namesize = e.name.len() + 1;
    let fields = [
        ino,
        e.mode,
        0, // uid
        0, // gid
        if e.mode & 0o040000 != 0 { 2 } else { 1 },
        0, // mtime
        e.data.len() as u32,
        0,
        0, // dev major/minor
        e.rdev.0,
        e.rdev.1,
        namesize as u32,
        0, // check
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(e.name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(e.data);
    pad4(out);
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpio_is_well_formed_and_deterministic() {
        let a = build_initramfs(b"\x7fELFfake");
        assert_eq!(a, build_initramfs(b"\x7fELFfake"));
        assert_eq!(a.len() % 512, 0);
        assert!(a.starts_with(b"070701"));
        let text = String::from_utf8_lossy(&a);
        for name in ["dev\0", "dev/console\0", "init\0", "TRAILER!!!\0"] {
            assert!(text.contains(name), "{name} missing");
        }
        // The console is a char device 5:1.
        let pos = text.find("dev/console").unwrap() - 110;
        assert_eq!(&text[pos + 14..pos + 22], "00002180");
        assert_eq!(&text[pos + 78..pos + 86], "00000005");
    }
}
