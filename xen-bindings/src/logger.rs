//! A xentoollog logger that forwards libxl's messages to `tracing` (target `libxl`).
//!
//! xentoollog hands over a printf format and a `va_list`; stable Rust cannot walk a `va_list`,
//! but it can pass one on: glibc's `vasprintf` (bound by libxl-sys with the `va_list` ABI bindgen
//! derives from the headers) does the formatting.
use libxl_sys as sys;
use std::ffi::{c_char, c_int, CStr};
use std::sync::Mutex;

/// The last error-level message libxl logged, numbered so a failing call can tell whether the
/// message came during the call.
#[derive(Default)]
pub(crate) struct LastError {
    seq: u64,
    message: Option<String>,
}

/// Laid out as libxl expects a logger: the vtable first, our state after it.
#[repr(C)]
pub(crate) struct TracingLogger {
    vtable: sys::xentoollog_logger,
    last_error: Mutex<LastError>,
}

impl TracingLogger {
    pub(crate) fn new() -> Box<Self> {
        Box::new(TracingLogger {
            vtable: sys::xentoollog_logger {
                vmessage: Some(vmessage),
                progress: Some(progress),
                destroy: None,
            },
            last_error: Mutex::new(LastError::default()),
        })
    }

    pub(crate) fn as_xtl(&mut self) -> *mut sys::xentoollog_logger {
        &mut self.vtable
    }

    /// A marker to pass to `error_since` once the call is over.
    pub(crate) fn mark(&self) -> u64 {
        self.last_error.lock().map(|l| l.seq).unwrap_or(0)
    }

    /// The last error logged after `mark`, if any.
    pub(crate) fn error_since(&self, mark: u64) -> Option<String> {
        let l = self.last_error.lock().ok()?;
        if l.seq > mark {
            l.message.clone()
        } else {
            None
        }
    }

    fn record_error(&self, message: &str) {
        if let Ok(mut l) = self.last_error.lock() {
            l.seq += 1;
            l.message = Some(message.to_string());
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

pub(crate) fn level(l: sys::xentoollog_level) -> Level {
    match l {
        sys::XTL_DEBUG | sys::XTL_VERBOSE => Level::Trace,
        sys::XTL_DETAIL => Level::Debug,
        sys::XTL_PROGRESS | sys::XTL_INFO | sys::XTL_NOTICE => Level::Info,
        sys::XTL_WARN => Level::Warn,
        _ => Level::Error,
    }
}

fn enabled(l: Level) -> bool {
    match l {
        Level::Trace => tracing::enabled!(target: "libxl", tracing::Level::TRACE),
        Level::Debug => tracing::enabled!(target: "libxl", tracing::Level::DEBUG),
        Level::Info => tracing::enabled!(target: "libxl", tracing::Level::INFO),
        Level::Warn => tracing::enabled!(target: "libxl", tracing::Level::WARN),
        Level::Error => true,
    }
}

/// One line: libxl's text, then the errno it reported (`-1`: none).
pub(crate) fn compose(text: &str, errnoval: c_int) -> String {
    let text = text.trim_end();
    if errnoval > 0 {
        format!("{text}: {}", std::io::Error::from_raw_os_error(errnoval))
    } else {
        text.to_string()
    }
}

fn emit(l: Level, context: &str, message: &str) {
    match l {
        Level::Trace => tracing::trace!(target: "libxl", context, "{message}"),
        Level::Debug => tracing::debug!(target: "libxl", context, "{message}"),
        Level::Info => tracing::info!(target: "libxl", context, "{message}"),
        Level::Warn => tracing::warn!(target: "libxl", context, "{message}"),
        Level::Error => tracing::error!(target: "libxl", context, "{message}"),
    }
}

unsafe extern "C" fn vmessage(
    logger: *mut sys::xentoollog_logger,
    xtl_level: sys::xentoollog_level,
    errnoval: c_int,
    context: *const c_char,
    format: *const c_char,
    args: *mut sys::__va_list_tag,
) {
    let l = level(xtl_level);
    if !enabled(l) || format.is_null() {
        return;
    }
    let mut formatted: *mut c_char = std::ptr::null_mut();
    // SAFETY: libxl passes a printf format and its matching va_list, used once here.
    if unsafe { sys::vasprintf(&mut formatted, format, args) } < 0 {
        return;
    }
    // SAFETY: vasprintf succeeded: a malloc'd C string we free below.
    let text = unsafe { CStr::from_ptr(formatted) }
        .to_string_lossy()
        .into_owned();
    // SAFETY: allocated by vasprintf.
    unsafe { libc::free(formatted.cast()) };
    let context = if context.is_null() {
        String::new()
    } else {
        // SAFETY: a C string from libxl, valid for this call.
        unsafe { CStr::from_ptr(context) }
            .to_string_lossy()
            .into_owned()
    };
    let message = compose(&text, errnoval);
    if l == Level::Error {
        // SAFETY: the vtable is the first field of a live TracingLogger (see Context).
        unsafe { &*(logger as *const TracingLogger) }.record_error(&message);
    }
    emit(l, &context, &message);
}

unsafe extern "C" fn progress(
    _logger: *mut sys::xentoollog_logger,
    context: *const c_char,
    doing_what: *const c_char,
    percent: c_int,
    _done: std::ffi::c_ulong,
    _total: std::ffi::c_ulong,
) {
    if doing_what.is_null() || !enabled(Level::Debug) {
        return;
    }
    // SAFETY: C strings from libxl, valid for this call.
    let what = unsafe { CStr::from_ptr(doing_what) }.to_string_lossy();
    let context = if context.is_null() {
        Default::default()
    } else {
        unsafe { CStr::from_ptr(context) }.to_string_lossy()
    };
    tracing::debug!(target: "libxl", context = %context, "{what}: {percent}%");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_map_onto_tracing() {
        assert_eq!(level(sys::XTL_DEBUG), Level::Trace);
        assert_eq!(level(sys::XTL_DETAIL), Level::Debug);
        assert_eq!(level(sys::XTL_NOTICE), Level::Info);
        assert_eq!(level(sys::XTL_WARN), Level::Warn);
        assert_eq!(level(sys::XTL_CRITICAL), Level::Error);
    }

    #[test]
    fn messages_are_one_line_with_the_errno() {
        assert_eq!(
            compose("cannot open kernel\n", libc::ENOENT),
            "cannot open kernel: No such file or directory (os error 2)"
        );
        assert_eq!(compose("plain", -1), "plain");
    }

    /// Drives the logger the way libxl does: through xtl_log, a C variadic function, so the
    /// va_list passing and vasprintf formatting are exercised for real.
    #[test]
    fn formats_printf_messages_from_c_and_records_errors() {
        let mut logger = TracingLogger::new();
        let mark = logger.mark();
        // SAFETY: a live logger; format and arguments match.
        unsafe {
            sys::xtl_log(
                logger.as_xtl(),
                sys::XTL_ERROR,
                libc::ENOENT,
                c"libxl".as_ptr(),
                c"domain %d: %s".as_ptr(),
                7 as c_int,
                c"no kernel".as_ptr(),
            );
        }
        assert_eq!(
            logger.error_since(mark).as_deref(),
            Some("domain 7: no kernel: No such file or directory (os error 2)")
        );
        let mark = logger.mark();
        // SAFETY: as above.
        unsafe {
            sys::xtl_log(
                logger.as_xtl(),
                sys::XTL_WARN,
                -1,
                c"libxl".as_ptr(),
                c"just a warning".as_ptr(),
            )
        };
        assert_eq!(logger.error_since(mark), None);
    }
}
