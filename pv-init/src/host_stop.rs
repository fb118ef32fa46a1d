//! A stop the hypervisor asks for (`xl shutdown`, `hx shutdown` of any domain): honoured like
//! `hx stop` — the workload gets SIGTERM, then SIGKILL after a grace period, and pv-init powers
//! off as it does whenever the workload ends.
//!
//! How the request reaches PID 1. Xen's `control/shutdown` = "poweroff" makes the guest kernel
//! call `orderly_poweroff()`, which runs `/proc/sys/kernel/poweroff_cmd` as a usermode helper.
//! Helpers share the fs root of PID 1 (init/main.c starts PID 1 and kthreadd with CLONE_FS), so
//! after pv-init's switch_root the command is looked up in the container's root, where the image
//! may have no `/sbin/poweroff`. pv-init points it at `/proc/1/exe` (itself, through the
//! container's /proc) with [`HELPER_ARG`]; that helper only sends [`REQUEST_SIGNAL`] to PID 1.
//! ("reboot" runs the fixed `/sbin/reboot` the same way, which cannot be redirected: without
//! one in the image the kernel restarts at once and the container ends with 125.)
use std::time::{Duration, Instant};

/// The argument that makes pv-init the poweroff helper instead of PID 1.
pub const HELPER_ARG: &str = "--hx-host-poweroff";
/// What pv-init writes to /proc/sys/kernel/poweroff_cmd.
pub const POWEROFF_CMD: &str = "/proc/1/exe --hx-host-poweroff";
/// What the helper sends PID 1 (sysvinit's "power failure": nothing else sends it to PID 1).
pub const REQUEST_SIGNAL: i32 = libc::SIGPWR;
/// SIGTERM to SIGKILL, as `docker stop` / `hx stop` by default.
pub const GRACE: Duration = Duration::from_secs(10);

/// The helper invocation: pv-init run by the kernel as `poweroff_cmd`, not as PID 1.
pub fn is_helper(args: &[String], pid: u32) -> bool {
    pid != 1 && args.len() == 2 && args[1] == HELPER_ARG
}

/// What PID 1 does with a signal it received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Pass it on to the workload (what `docker kill -s` to PID 1 would mean).
    Forward(i32),
    /// The host asked the guest to stop.
    Stop,
    /// SIGCHLD: reaping happens anyway.
    Reap,
}

/// A signal PID 1 received (`ssi_signo`).
pub fn classify(signo: i32) -> Action {
    match signo {
        libc::SIGCHLD => Action::Reap,
        REQUEST_SIGNAL => Action::Stop,
        s => Action::Forward(s),
    }
}

/// The stop in progress: SIGTERM sent at `since`, SIGKILL due after the grace period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopping {
    since: Instant,
    killed: bool,
}

impl Stopping {
    pub fn new(now: Instant) -> Self {
        Stopping {
            since: now,
            killed: false,
        }
    }

    /// True once, when the grace period is over: time for SIGKILL.
    pub fn kill_due(&mut self, now: Instant) -> bool {
        if !self.killed && now.duration_since(self.since) >= GRACE {
            self.killed = true;
            return true;
        }
        false
    }

    /// How long PID 1 may sleep before `kill_due` can turn true.
    pub fn wait(&self, now: Instant) -> Duration {
        if self.killed {
            Duration::MAX
        } else {
            GRACE.saturating_sub(now.duration_since(self.since))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_kernel_helper_invocation_is_the_helper() {
        let argv: Vec<String> = POWEROFF_CMD.split_whitespace().map(String::from).collect();
        // The kernel splits poweroff_cmd on spaces (argv_split): this is what pv-init gets.
        assert_eq!(argv, ["/proc/1/exe", HELPER_ARG]);
        assert!(is_helper(&argv, 42));
        assert!(!is_helper(&argv, 1), "PID 1 is never the helper");
        assert!(!is_helper(&["/init".into()], 42));
        assert!(!is_helper(&argv[..1], 42));
        let extra = [argv.clone(), vec!["x".into()]].concat();
        assert!(!is_helper(&extra, 42));
    }

    #[test]
    fn host_requests_stop_everything_else_is_forwarded() {
        assert_eq!(classify(libc::SIGPWR), Action::Stop);
        assert_eq!(classify(libc::SIGINT), Action::Forward(libc::SIGINT));
        assert_eq!(classify(libc::SIGTERM), Action::Forward(libc::SIGTERM));
        assert_eq!(classify(libc::SIGCHLD), Action::Reap);
    }

    #[test]
    fn sigkill_is_due_once_after_the_grace_period() {
        let t0 = Instant::now();
        let mut s = Stopping::new(t0);
        assert_eq!(s.wait(t0), GRACE);
        assert!(!s.kill_due(t0 + GRACE / 2));
        assert_eq!(s.wait(t0 + GRACE / 2), GRACE / 2);
        assert!(s.kill_due(t0 + GRACE));
        assert!(!s.kill_due(t0 + GRACE * 2), "SIGKILL is sent once");
        assert_eq!(s.wait(t0 + GRACE * 2), Duration::MAX);
    }
}
