//! Command output on stdout. A reader that goes away (`hx images -q | head -1`) ends hx the way
//! it ends `ls` or docker: by SIGPIPE, quietly. Rust ignores SIGPIPE (so a dropped socket is an
//! error, not a death) and `println!` would panic instead.
//!
//! Everything hx itself prints goes through `outln!` (stdout) or `errln!` (stderr), and both
//! render their text with `sanitize` (control characters and bidi overrides escaped): a CMD,
//! a `created` date or a guest's error message cannot drive the user's terminal.

/// `println!` for command output.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::output::write_out(format_args!("\n"))
    };
    ($($t:tt)*) => {
        $crate::output::write_out(format_args!("{}\n", format_args!($($t)*)))
    };
}

/// `eprintln!` for hx's own messages (errors, notices): one line, escaped.
#[macro_export]
macro_rules! errln {
    ($($t:tt)*) => {
        $crate::output::write_err(format_args!($($t)*))
    };
}

pub fn write_out(args: std::fmt::Arguments) {
    use std::io::Write;
    let text = std::fmt::format(args);
    let safe = crate::sanitize::text(&text).to_cow();
    if let Err(e) = std::io::stdout().lock().write_all(safe.as_bytes()) {
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

pub fn write_err(args: std::fmt::Arguments) {
    use std::io::Write;
    let text = std::fmt::format(args);
    let line = format!("{}\n", crate::sanitize::line(&text));
    // Nothing sensible is left to do when stderr itself fails.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

pub fn die_of_sigpipe() -> ! {
    // SAFETY: restoring the default action and raising the signal; nothing else runs after.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::raise(libc::SIGPIPE);
    }
    std::process::exit(128 + libc::SIGPIPE)
}

#[cfg(test)]
mod tests {
    /// The sinks above are the only way hx's own text reaches a terminal: a `println!` or
    /// `eprintln!` elsewhere would bypass the escaping of guest and image strings.
    #[test]
    fn no_print_macros_bypass_the_sanitizing_sinks() {
        fn walk(dir: &std::path::Path, bad: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, bad);
                } else if p.extension().is_some_and(|x| x == "rs") && !p.ends_with("output.rs") {
                    let text = std::fs::read_to_string(&p).unwrap();
                    for (n, l) in text.lines().enumerate() {
                        let code = l.split("//").next().unwrap_or("");
                        if ["println!(", "print!(", "eprint!("]
                            .iter()
                            .any(|m| code.contains(m))
                        {
                            bad.push(format!("{}:{}: {}", p.display(), n + 1, l.trim()));
                        }
                    }
                }
            }
        }
        let mut bad = Vec::new();
        // This crate and the hx CLI (toolstack/src), whose output goes through the same sinks.
        let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        for src in [here.join("src"), here.join("../src")] {
            walk(&src, &mut bad);
        }
        assert!(
            bad.is_empty(),
            "use outln!/errln! (output.rs) instead:\n{}",
            bad.join("\n")
        );
    }
}

/// The writer `tracing` gets (over stderr): events carry guest- and image-derived text (status
/// errors, names), so each write passes through the same escaping as `errln!`, newlines kept.
/// The subscriber writes no colours (`with_ansi(false)`): monitor.log and `-v` output stay
/// plain text.
pub struct Sanitizing<W>(pub W);

impl<W: std::io::Write> std::io::Write for Sanitizing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let safe = crate::sanitize::text(&text).to_cow();
        self.0.write_all(safe.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod sanitizing_tests {
    use std::io::Write;

    #[test]
    fn tracing_output_is_escaped_and_keeps_its_newlines() {
        let mut w = super::Sanitizing(Vec::new());
        let line = "WARN guest said \u{1b}]0;pwned\u{7} and \u{9b}2J\nnext\n";
        assert_eq!(w.write(line.as_bytes()).unwrap(), line.len());
        let out = String::from_utf8(w.0).unwrap();
        assert_eq!(
            out,
            "WARN guest said \\x1b]0;pwned\\x07 and \\u009b2J\nnext\n"
        );
    }
}
