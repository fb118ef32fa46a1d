//! A pod member's device cgroup: the eBPF program (BPF_PROG_TYPE_CGROUP_DEVICE) runc attaches
//! to a container's cgroup v2 group, here with docker's default rules — the harmless character
//! devices and the member's own terminals may be opened, any node may be made (`mknod`), nothing
//! else may be opened. Mounts keep a confined member's nodes inert (`nodev`), but a member that
//! holds CAP_SYS_ADMIN can mount a filesystem of its own without it; the program still keeps
//! it from the pod VM's block devices, where the other members' roots, layers and volumes are.
//!
//! The instructions come from rbpf's builder; loading and attaching are two bpf(2) calls.
use rbpf::insn_builder::{Arch, BpfCode, Cond, Instruction, IntoBytes, MemSize, Source};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `struct bpf_cgroup_dev_ctx`'s type and access values (include/uapi/linux/bpf.h).
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
/// /dev/pts/N: the member's own devpts instance.
const PTS_MAJOR: i32 = 136;
/// runc's and docker's allowed character devices besides the terminals: null, zero, full,
/// random, urandom, tty, console, ptmx, net/tun.
pub const ALLOWED: [(i32, i32); 9] = [
    (1, 3),
    (1, 5),
    (1, 7),
    (1, 8),
    (1, 9),
    (5, 0),
    (5, 1),
    (5, 2),
    (10, 200),
];

/// The program: r0 = 1 (allow) or 0 (deny, the opener gets EPERM).
pub fn program() -> Vec<u8> {
    // Jumps are relative (target = next instruction + off): count where the two ends are.
    const HEAD: i16 = 10;
    let pairs = ALLOWED.len() as i16;
    let deny = HEAD + 2 * pairs;
    let allow = deny + 2;
    let mut p = BpfCode::new();
    let at = |p: &BpfCode| (p.into_bytes().len() / 8) as i16;
    let to = |from: i16, target: i16| target - from - 1;
    // r2 = access_type, r3 = major, r4 = minor; r5 = access (high half), r2 = type (low half).
    p.load_x(MemSize::Word)
        .set_dst(2)
        .set_src(1)
        .set_off(0)
        .push();
    p.load_x(MemSize::Word)
        .set_dst(3)
        .set_src(1)
        .set_off(4)
        .push();
    p.load_x(MemSize::Word)
        .set_dst(4)
        .set_src(1)
        .set_off(8)
        .push();
    p.mov(Source::Reg, Arch::X64).set_dst(5).set_src(2).push();
    p.right_shift(Source::Imm, Arch::X64)
        .set_dst(5)
        .set_imm(16)
        .push();
    p.bit_and(Source::Imm, Arch::X64)
        .set_dst(2)
        .set_imm(0xffff)
        .push();
    // Asking for nothing but mknod: allowed, whatever the node.
    p.bit_and(Source::Imm, Arch::X64)
        .set_dst(5)
        .set_imm(!ACC_MKNOD & 0xffff)
        .push();
    let here = at(&p);
    p.jump_conditional(Cond::Equals, Source::Imm)
        .set_dst(5)
        .set_imm(0)
        .set_off(to(here, allow))
        .push();
    let here = at(&p);
    p.jump_conditional(Cond::NotEquals, Source::Imm)
        .set_dst(2)
        .set_imm(DEV_CHAR)
        .set_off(to(here, deny))
        .push();
    let here = at(&p);
    p.jump_conditional(Cond::Equals, Source::Imm)
        .set_dst(3)
        .set_imm(PTS_MAJOR)
        .set_off(to(here, allow))
        .push();
    debug_assert_eq!(at(&p), HEAD);
    for (major, minor) in ALLOWED {
        // Another major: on to the next pair.
        p.jump_conditional(Cond::NotEquals, Source::Imm)
            .set_dst(3)
            .set_imm(major)
            .set_off(1)
            .push();
        let here = at(&p);
        p.jump_conditional(Cond::Equals, Source::Imm)
            .set_dst(4)
            .set_imm(minor)
            .set_off(to(here, allow))
            .push();
    }
    debug_assert_eq!(at(&p), deny);
    p.mov(Source::Imm, Arch::X64).set_dst(0).set_imm(0).push();
    p.exit().push();
    p.mov(Source::Imm, Arch::X64).set_dst(0).set_imm(1).push();
    p.exit().push();
    p.into_bytes().to_vec()
}

#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// The kernel has no BPF (a hyper kernel from before the device cgroup).
    #[error(
        "the guest kernel has no BPF device cgroup (a hyper kernel from before it: reinstall hx's)"
    )]
    Unsupported,
    #[error("loading the device filter: {0}{1}")]
    Load(std::io::Error, String),
    #[error("attaching the device filter to {0}: {1}")]
    Attach(String, std::io::Error),
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;

/// `union bpf_attr` as BPF_PROG_LOAD reads it, up to the fields used (the kernel takes a
/// shorter attr whose tail it treats as zero).
#[repr(C)]
#[derive(Default)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `union bpf_attr` as BPF_PROG_ATTACH reads it.
#[repr(C)]
#[derive(Default)]
struct ProgAttach {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<libc::c_long> {
    // SAFETY: attr is a live, initialised repr(C) bpf_attr prefix of the size passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn load() -> Result<OwnedFd, FilterError> {
    let code = program();
    let license = c"Apache-2.0";
    let mut log = vec![0u8; 4096];
    let mut attr = ProgLoad {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: (code.len() / 8) as u32,
        insns: code.as_ptr() as u64,
        license: license.as_ptr() as u64,
        expected_attach_type: BPF_CGROUP_DEVICE,
        ..Default::default()
    };
    attr.prog_name[..9].copy_from_slice(b"hx_member");
    match bpf(BPF_PROG_LOAD, &mut attr) {
        // SAFETY: a new descriptor the kernel just returned.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) }),
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => Err(FilterError::Unsupported),
        Err(e) => {
            // Once more with the verifier's log, for the error.
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            let _ = bpf(BPF_PROG_LOAD, &mut attr);
            let text =
                String::from_utf8_lossy(&log[..log.iter().position(|&b| b == 0).unwrap_or(0)])
                    .lines()
                    .last()
                    .map(|l| format!(" ({l})"))
                    .unwrap_or_default();
            Err(FilterError::Load(e, text))
        }
    }
}

/// Attaches the device filter to the cgroup v2 group at `group` (a member's, before any of its
/// processes joins it).
pub fn attach(group: &std::path::Path) -> Result<(), FilterError> {
    let prog = load()?;
    let dir = std::fs::File::open(group)
        .map_err(|e| FilterError::Attach(group.display().to_string(), e))?;
    let mut attr = ProgAttach {
        target_fd: dir.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        ..Default::default()
    };
    bpf(BPF_PROG_ATTACH, &mut attr)
        .map(drop)
        .map_err(|e| FilterError::Attach(group.display().to_string(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the program on one request, as the kernel would (a tiny interpreter of the
    /// instructions `program` uses), so that its rules are checked without a kernel.
    fn verdict(access: u32, kind: u32, major: u32, minor: u32) -> u64 {
        let code = program();
        let ctx = [(access << 16) | kind, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = &code[pc * 8..pc * 8 + 8];
            let (op, dst, src) = (i[0], (i[1] & 0xf) as usize, (i[1] >> 4) as usize);
            let off = i16::from_le_bytes([i[2], i[3]]) as isize;
            let imm = i32::from_le_bytes([i[4], i[5], i[6], i[7]]) as i64 as u64;
            pc += 1;
            match op {
                0x61 => r[dst] = u64::from(ctx[off as usize / 4]), // ldxw
                0xbf => r[dst] = r[src],                           // mov64 reg
                0xb7 => r[dst] = imm,                              // mov64 imm
                0x77 => r[dst] >>= imm,                            // rsh64 imm
                0x57 => r[dst] &= imm,                             // and64 imm
                0x15 | 0x55 => {
                    // jeq / jne imm
                    if (r[dst] == imm) == (op == 0x15) {
                        pc = (pc as isize + off) as usize;
                    }
                }
                0x95 => return r[0],
                _ => panic!("opcode {op:#x} at {}", pc - 1),
            }
            assert!(pc * 8 < code.len(), "ran off the end");
        }
    }

    const READ: u32 = 2;
    const WRITE: u32 = 4;
    const MKNOD: u32 = 1;
    const BLOCK: u32 = 1;
    const CHAR: u32 = 2;

    #[test]
    fn docker_default_devices_open_and_nothing_else() {
        for (major, minor) in ALLOWED {
            assert_eq!(
                verdict(READ | WRITE, CHAR, major as u32, minor as u32),
                1,
                "{major}:{minor}"
            );
        }
        assert_eq!(verdict(READ | WRITE, CHAR, 136, 7), 1, "a pty");
        // The pod VM's disks (virtio-blk 254:*, SCSI 8:*), memory, a block node of a char pair.
        assert_eq!(verdict(READ, BLOCK, 8, 0), 0);
        assert_eq!(verdict(READ | WRITE, BLOCK, 254, 16), 0);
        assert_eq!(verdict(READ, CHAR, 1, 1), 0, "/dev/mem");
        assert_eq!(verdict(READ, BLOCK, 1, 3), 0, "block 1:3 is not /dev/null");
        assert_eq!(verdict(READ, CHAR, 5, 3), 0);
        assert_eq!(verdict(READ, CHAR, 10, 229), 0, "fuse is not docker's");
        // mknod alone is docker's `c *:* m` and `b *:* m`; with an open it is not.
        assert_eq!(verdict(MKNOD, BLOCK, 8, 0), 1);
        assert_eq!(verdict(MKNOD, CHAR, 1, 1), 1);
        assert_eq!(verdict(MKNOD | READ, BLOCK, 8, 0), 0);
    }

    proptest::proptest! {
        #[test]
        fn block_devices_never_open(major in 0u32..4096, minor in 0u32..1 << 20, access in 2u32..8) {
            proptest::prop_assert_eq!(verdict(access, BLOCK, major, minor), 0);
        }

        #[test]
        fn char_devices_open_only_from_the_list(major in 0u32..300, minor in 0u32..300, access in 2u32..8) {
            let listed = major == 136 || ALLOWED.contains(&(major as i32, minor as i32));
            proptest::prop_assert_eq!(verdict(access, CHAR, major, minor), u64::from(listed));
        }
    }
}
