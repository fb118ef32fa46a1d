//! The stand-in workload of a stopped container the host opened to read or write its files
//! (`hx cp`, `hx export`, `hx commit` of a stopped container: the engine's offline VM). It is
//! pv-init itself, reached through `/proc/1/exe` as the poweroff helper is (so it exists in
//! every image), and does nothing but wait: the agent serves the host's copies meanwhile, and
//! the host's SIGTERM ends it, after which pv-init syncs the writable layer and powers off.

/// The argument that makes pv-init the stand-in workload instead of PID 1.
pub const ARG: &str = "--hx-hold";

/// The workload's argv in the offline VM's spec.
pub fn argv() -> Vec<String> {
    vec!["/proc/1/exe".into(), ARG.into()]
}

/// The stand-in invocation: pv-init run as a workload, not as PID 1.
pub fn is_hold(args: &[String], pid: u32) -> bool {
    pid != 1 && args.len() == 2 && args[1] == ARG
}

/// Waits until a signal ends the process (SIGTERM's default action).
pub fn hold() -> ! {
    loop {
        nix::unistd::pause();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_invocation_outside_pid_1_holds() {
        let a = argv();
        assert!(is_hold(&a, 7));
        assert!(!is_hold(&a, 1));
        assert!(!is_hold(&["/init".into()], 7));
        assert!(!is_hold(&[a[0].clone(), ARG.into(), "x".into()], 7));
    }
}
