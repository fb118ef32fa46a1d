use thiserror::Error;

#[derive(Debug, Error)]
pub enum XenError {
    /// A libxl call failed: its error code, and the last error libxl logged during the call.
    #[error("libxl {op}: {name} ({code}){}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Libxl {
        op: &'static str,
        code: i32,
        name: &'static str,
        message: Option<String>,
    },
    /// A xenstore request failed: `source` carries the errno xenstored answered with.
    #[error("xenstore {op} {path}: {source}")]
    Xenstore {
        op: &'static str,
        path: String,
        source: std::io::Error,
    },
    /// xenstored (or something posing as it) broke the wire protocol.
    #[error("xenstore protocol: {0}")]
    Protocol(String),
    #[error("xenstore {path}: value from the guest rejected: {reason}")]
    Untrusted { path: String, reason: String },
    #[error("invalid domain config: {0}")]
    InvalidConfig(String),
    #[error("not a Xen dom0 (/proc/xen/capabilities has no control_d)")]
    NotDom0,
    #[error("libxl context setup: {0}")]
    Setup(String),
}

impl From<xenstore_wire::Error> for XenError {
    fn from(e: xenstore_wire::Error) -> Self {
        use xenstore_wire::Error as W;
        match e {
            W::Xenstore { op, path, source } => XenError::Xenstore { op, path, source },
            W::Protocol(m) => XenError::Protocol(m),
            W::Untrusted { path, reason } => XenError::Untrusted { path, reason },
            W::InvalidPath { path, reason } => {
                XenError::InvalidConfig(format!("xenstore path {path:?}: {reason}"))
            }
        }
    }
}

impl XenError {
    pub fn libxl(op: &'static str, code: i32) -> Self {
        XenError::Libxl {
            op,
            code,
            name: libxl_error_name(code),
            message: None,
        }
    }

    pub(crate) fn libxl_with(op: &'static str, code: i32, message: Option<String>) -> Self {
        XenError::Libxl {
            op,
            code,
            name: libxl_error_name(code),
            message,
        }
    }

    /// libxl's error code, if this is a libxl failure (`libxl_sys::ERROR_*`).
    pub fn libxl_code(&self) -> Option<i32> {
        match self {
            XenError::Libxl { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The errno xenstored answered with, if this is a xenstore failure.
    pub fn errno(&self) -> Option<i32> {
        match self {
            XenError::Xenstore { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// libxl's error codes (libxl_types.idl, `libxl_error`).
pub fn libxl_error_name(code: i32) -> &'static str {
    match code {
        0 => "success",
        -1 => "ERROR_NONSPECIFIC",
        -2 => "ERROR_VERSION",
        -3 => "ERROR_FAIL",
        -4 => "ERROR_NI",
        -5 => "ERROR_NOMEM",
        -6 => "ERROR_INVAL",
        -7 => "ERROR_BADFAIL",
        -8 => "ERROR_GUEST_TIMEDOUT",
        -9 => "ERROR_TIMEDOUT",
        -10 => "ERROR_NOPARAVIRT",
        -11 => "ERROR_NOT_READY",
        -12 => "ERROR_OSEVENT_REG_FAIL",
        -13 => "ERROR_BUFFERFULL",
        -14 => "ERROR_UNKNOWN_CHILD",
        -15 => "ERROR_LOCK_FAIL",
        -16 => "ERROR_JSON_CONFIG_EMPTY",
        -17 => "ERROR_DEVICE_EXISTS",
        -18 => "ERROR_CHECKPOINT_DEVOPS_DOES_NOT_MATCH",
        -19 => "ERROR_CHECKPOINT_DEVICE_NOT_SUPPORTED",
        -20 => "ERROR_VNUMA_CONFIG_INVALID",
        -21 => "ERROR_DOMAIN_NOTFOUND",
        -22 => "ERROR_ABORTED",
        -23 => "ERROR_NOTFOUND",
        -24 => "ERROR_DOMAIN_DESTROYED",
        -25 => "ERROR_FEATURE_REMOVED",
        -26 => "ERROR_PROTOCOL_ERROR_QMP",
        -27 => "ERROR_UNKNOWN_QMP_ERROR",
        -28 => "ERROR_QMP_GENERIC_ERROR",
        -29 => "ERROR_QMP_COMMAND_NOT_FOUND",
        -30 => "ERROR_QMP_DEVICE_NOT_ACTIVE",
        -31 => "ERROR_QMP_DEVICE_NOT_FOUND",
        -32 => "ERROR_QEMU_API",
        _ => "unknown libxl error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_headers() {
        assert_eq!(libxl_sys::ERROR_FAIL, -3);
        assert_eq!(libxl_error_name(libxl_sys::ERROR_FAIL), "ERROR_FAIL");
        assert_eq!(
            libxl_error_name(libxl_sys::ERROR_DOMAIN_NOTFOUND),
            "ERROR_DOMAIN_NOTFOUND"
        );
        assert_eq!(libxl_error_name(libxl_sys::ERROR_INVAL), "ERROR_INVAL");
        assert_eq!(
            XenError::libxl("create", -6).to_string(),
            "libxl create: ERROR_INVAL (-6)"
        );
        assert_eq!(libxl_error_name(-99), "unknown libxl error");
    }

    #[test]
    fn libxl_errors_carry_code_and_logged_message() {
        let e = XenError::libxl_with(
            "domain_create_new",
            libxl_sys::ERROR_FAIL,
            Some("kernel not found".into()),
        );
        assert_eq!(
            e.to_string(),
            "libxl domain_create_new: ERROR_FAIL (-3): kernel not found"
        );
        assert_eq!(e.libxl_code(), Some(-3));
        let e = XenError::Xenstore {
            op: "read",
            path: "/x".into(),
            source: std::io::Error::from_raw_os_error(libc::EACCES),
        };
        assert_eq!(e.errno(), Some(libc::EACCES));
        assert_eq!(e.libxl_code(), None);
    }
}
