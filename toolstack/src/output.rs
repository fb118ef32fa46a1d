//! Command output on stdout. A reader that goes away (`hx images -q | head -1`) ends hx the way
//! it ends `ls` or docker: by SIGPIPE, quietly. Rust ignores SIGPIPE (so a dropped socket is an
//! error, not a death) and `println!` would panic instead.

/// `println!` for command output.
macro_rules! outln {
    () => {
        $crate::output::write_out(format_args!("\n"))
    };
    ($($t:tt)*) => {
        $crate::output::write_out(format_args!("{}\n", format_args!($($t)*)))
    };
}

pub fn write_out(args: std::fmt::Arguments) {
    use std::io::Write;
    if let Err(e) = std::io::stdout().lock().write_fmt(args) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            die_of_sigpipe();
        }
        eprintln!("hx: writing to stdout: {e}");
        std::process::exit(1);
    }
}

/// Whether stdout is a pipe or socket whose reader has gone: the write end then polls POLLERR.
pub fn stdout_closed() -> bool {
    let mut fd = libc::pollfd {
        fd: libc::STDOUT_FILENO,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no timeout.
    let n = unsafe { libc::poll(&mut fd, 1, 0) };
    n == 1 && fd.revents & libc::POLLERR != 0
}

pub fn die_of_sigpipe() -> ! {
    // SAFETY: restoring the default action and raising the signal; nothing else runs after.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::raise(libc::SIGPIPE);
    }
    std::process::exit(128 + libc::SIGPIPE)
}
