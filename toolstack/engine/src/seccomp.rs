//! Seccomp: a workload's system-call filter. The profile — hx's default (docker's rules,
//! `seccomp/default.json`), a file in docker's format (`--security-opt seccomp=FILE`) or an OCI
//! spec's `linux.seccomp` (hx-runtime, the shim, hence docker's and Kubernetes'
//! RuntimeDefault) — is compiled to classic BPF here in dom0 by libseccomp; pv-init only
//! installs the program (docs/security.md, "Seccomp").
use std::io::{Read, Seek};

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
};
use pv_init::spec::{Capabilities, Seccomp};
use serde::{Deserialize, Serialize};

/// The largest profile file read (docker's default is 13 KiB).
pub const MAX_PROFILE: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp profile: {0}")]
    Parse(String),
    #[error("seccomp profile: {0}")]
    Invalid(String),
    #[error("seccomp profile: {0} (libseccomp: {1})")]
    Compile(String, String),
}

/// Which filter a container's workload and execs get; kept in its create request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SeccompPolicy {
    /// No filter: `seccomp=unconfined`, `--privileged`, an OCI spec without one (and what a
    /// container made before hx had seccomp keeps).
    #[default]
    Unconfined,
    /// hx's default profile, resolved against the workload's capabilities at each start.
    Default,
    /// A profile in docker's format, its text as read when the container was made.
    Docker { profile: String },
    /// An OCI spec's `linux.seccomp`.
    Oci { profile: Box<LinuxSeccomp> },
}

/// The program pv-init installs for this policy and these capabilities; None: unconfined.
pub fn program(
    policy: &SeccompPolicy,
    caps: &Capabilities,
) -> Result<Option<Seccomp>, SeccompError> {
    let profile = match policy {
        SeccompPolicy::Unconfined => return Ok(None),
        SeccompPolicy::Default => {
            from_docker(include_str!("seccomp/default.json").as_bytes(), caps)?
        }
        SeccompPolicy::Docker { profile } => from_docker(profile.as_bytes(), caps)?,
        SeccompPolicy::Oci { profile } => (**profile).clone(),
    };
    let mut s = compile(&profile)?;
    // Nobody named hx's default: a guest kernel without seccomp runs without it (docker's way).
    s.optional = *policy == SeccompPolicy::Default;
    Ok(Some(s))
}

/// Checks a docker-format profile as `--security-opt seccomp=FILE` reads it: bounded, parsed
/// strictly, and compiled, so that a bad profile is refused when the container is made, not at
/// its start.
pub fn check_docker(text: &str) -> Result<(), SeccompError> {
    // (from_docker bounds the text.) With docker's default set and with every capability: a
    // rule only some capabilities bring in (`includes.caps`) is checked too.
    for caps in [Capabilities::docker_default(), Capabilities::all()] {
        compile(&from_docker(text.as_bytes(), &caps)?)?;
    }
    Ok(())
}

/// docker's profile format (moby's `types.Seccomp`): OCI's, with an architecture map and
/// rules that apply only for some capabilities or architectures.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DockerProfile {
    default_action: LinuxSeccompAction,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Option<Vec<Arch>>,
    #[serde(default)]
    arch_map: Option<Vec<ArchMap>>,
    #[serde(default)]
    syscalls: Option<Vec<DockerSyscall>>,
    #[serde(default)]
    flags: Option<Vec<LinuxSeccompFilterFlag>>,
    #[serde(default)]
    listener_path: Option<String>,
    #[serde(default)]
    listener_metadata: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ArchMap {
    architecture: Arch,
    #[serde(default)]
    sub_architectures: Option<Vec<Arch>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DockerSyscall {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    names: Option<Vec<String>>,
    action: LinuxSeccompAction,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<LinuxSeccompArg>>,
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    includes: Option<Condition>,
    #[serde(default)]
    excludes: Option<Condition>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Condition {
    #[serde(default)]
    arches: Option<Vec<String>>,
    #[serde(default)]
    caps: Option<Vec<String>>,
    #[serde(default)]
    min_kernel: Option<String>,
}

/// Go's name for the machine, as docker's `arches` conditions spell it.
const NATIVE_GOARCH: &str = "amd64";

/// A docker-format profile as the OCI spec docker would write for a workload with these
/// capabilities (moby's `setupSeccomp`): the native architecture's entry of the map, the rules
/// whose conditions hold. `minKernel` is taken as met: the hyper kernel (6.1) is newer than any
/// docker's profile names.
pub fn from_docker(text: &[u8], caps: &Capabilities) -> Result<LinuxSeccomp, SeccompError> {
    if text.len() > MAX_PROFILE {
        return Err(SeccompError::Invalid(format!(
            "{} bytes, more than the {MAX_PROFILE} hx reads",
            text.len()
        )));
    }
    let p: DockerProfile =
        serde_json::from_slice(text).map_err(|e| SeccompError::Parse(json_error(&e)))?;
    let arch_map = p.arch_map.unwrap_or_default();
    if p.architectures.as_ref().is_some_and(|a| !a.is_empty()) && !arch_map.is_empty() {
        return Err(SeccompError::Invalid(
            "both architectures and archMap are set".into(),
        ));
    }
    let architectures = if arch_map.is_empty() {
        p.architectures.unwrap_or_default()
    } else {
        arch_map
            .into_iter()
            .find(|m| m.architecture == Arch::ScmpArchX86_64)
            .map(|m| {
                std::iter::once(m.architecture)
                    .chain(m.sub_architectures.unwrap_or_default())
                    .collect()
            })
            .unwrap_or_default()
    };
    let has_cap = |name: &String| -> Result<bool, SeccompError> {
        let bit = crate::capabilities::bit(name)
            .map_err(|e| SeccompError::Invalid(format!("a rule's caps: {e}")))?;
        Ok(caps.bounding & bit != 0)
    };
    let mut syscalls = Vec::new();
    for (i, s) in p.syscalls.unwrap_or_default().into_iter().enumerate() {
        let names = match (s.name, s.names) {
            (Some(_), Some(n)) if !n.is_empty() => {
                return Err(SeccompError::Invalid(format!(
                    "syscalls[{i}] sets both name and names"
                )));
            }
            (Some(n), _) => vec![n],
            (None, n) => n.unwrap_or_default(),
        };
        let _ = s.comment;
        let inc = s.includes.unwrap_or_default();
        let exc = s.excludes.unwrap_or_default();
        for k in [&inc.min_kernel, &exc.min_kernel].into_iter().flatten() {
            check_kernel_version(k)?;
        }
        let mut applies = inc
            .arches
            .as_ref()
            .is_none_or(|a| a.is_empty() || a.iter().any(|a| a == NATIVE_GOARCH));
        for c in inc.caps.iter().flatten() {
            applies &= has_cap(c)?;
        }
        if exc.arches.iter().flatten().any(|a| a == NATIVE_GOARCH) || exc.min_kernel.is_some() {
            applies = false;
        }
        for c in exc.caps.iter().flatten() {
            if has_cap(c)? {
                applies = false;
            }
        }
        if !applies {
            continue;
        }
        let mut rule = LinuxSyscall::default();
        rule.set_names(names);
        rule.set_action(s.action);
        rule.set_errno_ret(s.errno_ret);
        rule.set_args(s.args);
        syscalls.push(rule);
    }
    let mut out = LinuxSeccomp::default();
    out.set_default_action(p.default_action);
    out.set_default_errno_ret(p.default_errno_ret);
    out.set_architectures(Some(architectures));
    out.set_flags(p.flags);
    out.set_listener_path(p.listener_path.map(Into::into));
    out.set_listener_metadata(p.listener_metadata);
    out.set_syscalls(Some(syscalls));
    Ok(out)
}

/// serde's message quotes the input's names: escaped (no control byte reaches a terminal or a
/// log line) and cut short.
fn json_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let mut out: String = text
        .chars()
        .take(200)
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect();
    if text.chars().count() > 200 {
        out.push_str("...");
    }
    out
}

fn check_kernel_version(v: &str) -> Result<(), SeccompError> {
    let ok = v.split('.').count() <= 3
        && v.split('.')
            .all(|n| !n.is_empty() && n.len() <= 4 && n.bytes().all(|b| b.is_ascii_digit()));
    if ok {
        Ok(())
    } else {
        Err(SeccompError::Invalid(format!(
            "minKernel {v:?}: not a kernel version"
        )))
    }
}

/// The most instructions a classic BPF program may have (the kernel's BPF_MAXINSNS), as the
/// guest checks it.
const MAX_INSNS: usize = Seccomp::MAX_INSNS;

fn action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<ScmpAction, SeccompError> {
    let ret = |what: &str| -> Result<i32, SeccompError> {
        let e = errno.unwrap_or(libc::EPERM as u32);
        i32::try_from(e)
            .ok()
            .filter(|e| *e <= 0xffff)
            .ok_or_else(|| SeccompError::Invalid(format!("{what} {e}: out of range")))
    };
    Ok(match a {
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(ret("errnoRet")?),
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(ret("errnoRet")? as u16),
        LinuxSeccompAction::ScmpActNotify => {
            return Err(SeccompError::Invalid(
                "SCMP_ACT_NOTIFY: no seccomp agent reaches into a guest".into(),
            ));
        }
    })
}

fn condition(a: &LinuxSeccompArg) -> Result<ScmpArgCompare, SeccompError> {
    if a.index() > 5 {
        return Err(SeccompError::Invalid(format!(
            "argument index {} (a system call has 6)",
            a.index()
        )));
    }
    let op = match a.op() {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        // OCI's value is the mask, valueTwo the datum (runc's reading).
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            return Ok(ScmpArgCompare::new(
                a.index() as u32,
                ScmpCompareOp::MaskedEqual(a.value()),
                a.value_two().unwrap_or(0),
            ));
        }
    };
    Ok(ScmpArgCompare::new(a.index() as u32, op, a.value()))
}

/// The libseccomp name of an OCI architecture (both are `SCMP_ARCH_*`).
fn scmp_arch(a: Arch) -> Result<ScmpArch, SeccompError> {
    let name = serde_json::to_value(a)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    name.parse::<ScmpArch>()
        .map_err(|e| SeccompError::Compile(format!("architecture {name}"), e.to_string()))
}

/// An OCI profile as the BPF program pv-init installs, as runc builds it: rules whose action
/// is the default's are left out (libseccomp refuses them), names this libseccomp does not
/// know are skipped, several conditions on one argument become one rule each (libseccomp
/// cannot AND them).
pub fn compile(p: &LinuxSeccomp) -> Result<Seccomp, SeccompError> {
    let lib = |what: &str| {
        let what = what.to_string();
        move |e: libseccomp::error::SeccompError| SeccompError::Compile(what, e.to_string())
    };
    if p.listener_path().is_some() {
        return Err(SeccompError::Invalid(
            "listenerPath: no seccomp agent reaches into a guest".into(),
        ));
    }
    let default = action(p.default_action(), p.default_errno_ret())?;
    let mut ctx = ScmpFilterContext::new(default).map_err(lib("a filter"))?;
    // A binary tree of the system calls instead of a list (runc's choice past 32 rules):
    // every call a workload makes walks the filter.
    if p.syscalls().as_ref().map_or(0, Vec::len) > 32 {
        ctx.set_ctl_optimize(2).map_err(lib("optimizing"))?;
    }
    // The highest native system call the profile names: newer ones answer ENOSYS (below).
    let mut highest: i32 = -1;
    for a in p.architectures().iter().flatten() {
        if *a == Arch::ScmpArchNative {
            continue;
        }
        let arch = scmp_arch(*a)?;
        if !ctx.is_arch_present(arch).map_err(lib("architectures"))? {
            ctx.add_arch(arch).map_err(lib("architectures"))?;
        }
    }
    let mut flags = 0;
    for f in p.flags().iter().flatten() {
        flags |= match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
            }
            // The workload is one thread when its filter is installed.
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => 0,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                return Err(SeccompError::Invalid(
                    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV: no seccomp agent".into(),
                ));
            }
        } as u32;
    }
    for (i, s) in p.syscalls().iter().flatten().enumerate() {
        let act = action(s.action(), s.errno_ret())?;
        if act == default {
            continue;
        }
        let conds = s
            .args()
            .iter()
            .flatten()
            .map(condition)
            .collect::<Result<Vec<_>, _>>()?;
        let mut indexes: Vec<u32> = s
            .args()
            .iter()
            .flatten()
            .map(|a| a.index() as u32)
            .collect();
        indexes.sort_unstable();
        let repeated = indexes.windows(2).any(|w| w[0] == w[1]);
        for name in s.names() {
            // libseccomp's own bound on a name, and any stray byte, before it reaches C.
            if name.is_empty() || name.len() > 64 || !name.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(SeccompError::Invalid(format!(
                    "syscalls[{i}]: {name:?} is not a system call name"
                )));
            }
            let Ok(nr) = ScmpSyscall::from_name(name) else {
                tracing::debug!(syscall = %name, "seccomp: not a system call here, skipped");
                continue;
            };
            highest = highest.max(i32::from(nr));
            let what = format!("syscalls[{i}] {name}");
            if conds.is_empty() {
                ctx.add_rule(act, nr).map_err(lib(&what))?;
            } else if repeated {
                for c in &conds {
                    ctx.add_rule_conditional(act, nr, std::slice::from_ref(c))
                        .map_err(lib(&what))?;
                }
            } else {
                ctx.add_rule_conditional(act, nr, &conds)
                    .map_err(lib(&what))?;
            }
        }
    }
    let mut file = tempfile::tempfile()
        .map_err(|e| SeccompError::Compile("a scratch file".into(), e.to_string()))?;
    ctx.export_bpf(&file)
        .map_err(lib("exporting the program"))?;
    let mut bytes = Vec::new();
    file.rewind()
        .and_then(|()| file.read_to_end(&mut bytes))
        .map_err(|e| SeccompError::Compile("reading the program".into(), e.to_string()))?;
    let denies = !matches!(default, ScmpAction::Allow | ScmpAction::Log);
    if denies && highest > 0 {
        bytes = [enosys_stub(highest as u32), bytes].concat();
    }
    if bytes.is_empty() || !bytes.len().is_multiple_of(8) || bytes.len() / 8 > MAX_INSNS {
        return Err(SeccompError::Invalid(format!(
            "the compiled program is {} bytes (at most {MAX_INSNS} instructions)",
            bytes.len()
        )));
    }
    Ok(Seccomp::from_bytes(&bytes, flags, false))
}

/// runc's answer to a profile older than the kernel: a native system call numbered above every
/// one the profile names is one its author could not know — ENOSYS, so that libc falls back
/// (glibc's fchmodat2), instead of the default's EPERM. x32's calls (bit 30) and other
/// architectures go on to the filter itself. Prepended: classic BPF jumps are relative, the
/// filter's own stay right.
fn enosys_stub(highest: u32) -> Vec<u8> {
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
    const JGT_K: u16 = 0x25; // BPF_JMP | BPF_JGT | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    // seccomp_data: nr at 0, arch at 4.
    let insns: [(u16, u8, u8, u32); 6] = [
        (LD_W_ABS, 0, 0, 4),
        (JEQ_K, 0, 4, AUDIT_ARCH_X86_64),
        (LD_W_ABS, 0, 0, 0),
        (JGE_K, 2, 0, X32_SYSCALL_BIT),
        (JGT_K, 0, 1, highest),
        (RET_K, 0, 0, libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
    ];
    insns
        .iter()
        .flat_map(|&(code, jt, jf, k)| {
            let mut b = code.to_le_bytes().to_vec();
            b.extend([jt, jf]);
            b.extend(k.to_le_bytes());
            b
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_for(caps: u64) -> LinuxSeccomp {
        from_docker(
            include_str!("seccomp/default.json").as_bytes(),
            &Capabilities::of(caps),
        )
        .unwrap()
    }

    fn allowed(p: &LinuxSeccomp, name: &str) -> bool {
        p.syscalls().iter().flatten().any(|s| {
            s.action() == LinuxSeccompAction::ScmpActAllow && s.names().iter().any(|n| n == name)
        })
    }

    #[test]
    fn the_default_follows_the_capabilities() {
        let plain = default_for(Capabilities::DOCKER_DEFAULT);
        assert!(allowed(&plain, "read") && allowed(&plain, "chroot"));
        assert!(!allowed(&plain, "mount") && !allowed(&plain, "reboot"));
        let admin = default_for(Capabilities::DOCKER_DEFAULT | 1 << 21);
        assert!(allowed(&admin, "mount") && allowed(&admin, "unshare"));
        // clone3's ENOSYS is only for a workload without CAP_SYS_ADMIN.
        let errno = |p: &LinuxSeccomp| {
            p.syscalls()
                .iter()
                .flatten()
                .any(|s| s.names() == &["clone3".to_string()] && s.errno_ret() == Some(38))
        };
        assert!(errno(&plain) && !errno(&admin));
        assert_eq!(
            plain.architectures().as_deref(),
            Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32][..])
        );
    }

    #[test]
    fn the_default_compiles_to_a_bounded_program() {
        let s = program(&SeccompPolicy::Default, &Capabilities::docker_default())
            .unwrap()
            .unwrap();
        assert!(
            s.instructions().unwrap().len() > 100 && s.instructions().unwrap().len() <= MAX_INSNS,
            "{}",
            s.instructions().unwrap().len()
        );
        assert_eq!(s.flags, 0);
        assert!(program(&SeccompPolicy::Unconfined, &Capabilities::all())
            .unwrap()
            .is_none());
    }

    #[test]
    fn bad_profiles_are_refused_naming_the_fault() {
        for (text, want) in [
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","bogus":1}"#,
                "unknown field",
            ),
            (r#"{"defaultAction":"SCMP_ACT_NOPE"}"#, "unknown variant"),
            (
                r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64"],"archMap":[{"architecture":"SCMP_ARCH_X86_64"}]}"#,
                "both architectures and archMap",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_NOTIFY"}]}"#,
                "SCMP_ACT_NOTIFY",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir\u001b[2J"],"action":"SCMP_ACT_ERRNO"}]}"#,
                "not a system call name",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO","args":[{"index":9,"value":1,"op":"SCMP_CMP_EQ"}]}]}"#,
                "argument index 9",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO","includes":{"caps":["CAP_NOPE"]}}]}"#,
                "unknown capability",
            ),
        ] {
            let e = check_docker(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
            assert!(!e.contains('\u{1b}'), "{e}");
        }
    }

    #[test]
    fn a_profile_denying_one_call_compiles() {
        let text = r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"names":["mkdir","mkdirat","no_such_call"],"action":"SCMP_ACT_ERRNO","errnoRet":13},
            {"names":["personality"],"action":"SCMP_ACT_ERRNO","args":[
                {"index":0,"value":1,"op":"SCMP_CMP_EQ"},{"index":0,"value":2,"op":"SCMP_CMP_EQ"}]}]}"#;
        check_docker(text).unwrap();
        let p = from_docker(text.as_bytes(), &Capabilities::docker_default()).unwrap();
        let s = compile(&p).unwrap();
        assert!(s.instructions().unwrap().len() > 4);
    }

    /// The compiled default, installed in a forked child of this test: a call it denies gets
    /// EPERM, one numbered past every call it names ENOSYS (the stub), an allowed one passes.
    #[test]
    fn the_default_program_denies_and_answers_enosys_past_its_calls() {
        let s = program(&SeccompPolicy::Default, &Capabilities::docker_default())
            .unwrap()
            .unwrap();
        assert!(s.optional);
        let mut insns: Vec<libc::sock_filter> = s
            .instructions()
            .unwrap()
            .into_iter()
            .map(|(code, jt, jf, k)| libc::sock_filter { code, jt, jf, k })
            .collect();
        let prog = libc::sock_fprog {
            len: insns.len() as u16,
            filter: insns.as_mut_ptr(),
        };
        // SAFETY: the child makes system calls only, then _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            unsafe {
                let errno = || *libc::__errno_location();
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                    || libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, &prog)
                        != 0
                {
                    libc::_exit(100);
                }
                let mut code = 0;
                if libc::syscall(libc::SYS_keyctl, 0, 0, 0, 0) == -1 && errno() == libc::EPERM {
                    code |= 1;
                }
                if libc::syscall(1000, 0, 0, 0) == -1 && errno() == libc::ENOSYS {
                    code |= 2;
                }
                if libc::syscall(libc::SYS_getpid) > 0 {
                    code |= 4;
                }
                libc::_exit(code);
            }
        }
        let mut status = 0;
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status), "{status:#x}");
        assert_eq!(
            libc::WEXITSTATUS(status),
            7,
            "1: keyctl EPERM, 2: nr 1000 ENOSYS, 4: getpid"
        );
    }

    #[test]
    fn parse_errors_quote_no_control_bytes() {
        let e = check_docker(r#"{"default\u001b[2JAction": 1}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown field") && !e.chars().any(char::is_control),
            "{e:?}"
        );
    }

    proptest::proptest! {
        /// Any bytes: an answer (a profile or a one-line error), never a panic.
        #[test]
        fn arbitrary_profiles_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            if let Err(e) = from_docker(&bytes, &Capabilities::docker_default()) {
                proptest::prop_assert!(!e.to_string().contains('\n'));
            }
        }

        /// Mutations of a valid profile's JSON: compiled or refused, never a panic.
        #[test]
        fn mutated_profiles_never_panic(at in 0usize..400, byte in proptest::num::u8::ANY) {
            let base = br#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":1,"archMap":[{"architecture":"SCMP_ARCH_X86_64","subArchitectures":["SCMP_ARCH_X86"]}],"syscalls":[{"names":["read","write","exit_group"],"action":"SCMP_ACT_ALLOW"},{"names":["clone"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":2114060288,"op":"SCMP_CMP_MASKED_EQ"}],"excludes":{"caps":["CAP_SYS_ADMIN"]}}]}"#;
            let mut b = base.to_vec();
            let i = at % b.len();
            b[i] = byte;
            if let Ok(text) = std::str::from_utf8(&b) {
                if let Err(e) = check_docker(text) {
                    proptest::prop_assert!(!e.to_string().chars().any(char::is_control), "{e:?}");
                }
            }
        }
    }
}
