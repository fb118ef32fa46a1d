//! The xenstore wire protocol (xen/include/public/io/xs_wire.h): a 16-byte header of four
//! native-endian u32 — type, request id, transaction id, payload length — then at most 4096
//! bytes of payload, mostly NUL-terminated strings. The same framing runs over xenstored's unix
//! socket and over /dev/xen/xenbus.
use crate::error::Error;
use crate::path::MAX_ENTRIES;
use std::io::{Read, Write};

pub const HEADER_LEN: usize = 16;
/// XENSTORE_PAYLOAD_MAX: xenstored never sends more and refuses more.
pub const PAYLOAD_MAX: usize = 4096;

/// Message types (enum xsd_sockmsg_type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum MsgType {
    Directory = 1,
    Read = 2,
    GetPerms = 3,
    Watch = 4,
    Unwatch = 5,
    TransactionStart = 6,
    TransactionEnd = 7,
    GetDomainPath = 10,
    Write = 11,
    Mkdir = 12,
    Rm = 13,
    SetPerms = 14,
    WatchEvent = 15,
    Error = 16,
}

impl MsgType {
    pub fn from_u32(v: u32) -> Option<Self> {
        use MsgType::*;
        Some(match v {
            1 => Directory,
            2 => Read,
            3 => GetPerms,
            4 => Watch,
            5 => Unwatch,
            6 => TransactionStart,
            7 => TransactionEnd,
            10 => GetDomainPath,
            11 => Write,
            12 => Mkdir,
            13 => Rm,
            14 => SetPerms,
            15 => WatchEvent,
            16 => Error,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub kind: MsgType,
    pub req_id: u32,
    pub tx_id: u32,
    pub payload: Vec<u8>,
}

impl Msg {
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        if self.payload.len() > PAYLOAD_MAX {
            return Err(Error::Protocol(format!(
                "request of {} bytes exceeds the {PAYLOAD_MAX}-byte payload limit",
                self.payload.len()
            )));
        }
        let mut out = Vec::with_capacity(HEADER_LEN + self.payload.len());
        for v in [
            self.kind as u32,
            self.req_id,
            self.tx_id,
            self.payload.len() as u32,
        ] {
            out.extend_from_slice(&v.to_ne_bytes());
        }
        out.extend_from_slice(&self.payload);
        Ok(out)
    }

    pub fn write_to(&self, w: &mut impl Write) -> Result<(), Error> {
        // One write per message: /dev/xen/xenbus wants a whole message per write(2).
        w.write_all(&self.encode()?)
            .map_err(|e| Error::Protocol(format!("sending to xenstored: {e}")))
    }

    /// Reads one message; Ok(None) at a clean end of stream (before a header's first byte).
    pub fn read_from(r: &mut impl Read) -> Result<Option<Msg>, Error> {
        let mut h = [0u8; HEADER_LEN];
        let mut got = 0;
        while got < HEADER_LEN {
            match r.read(&mut h[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => {
                    return Err(Error::Protocol(format!(
                        "truncated header ({got} of {HEADER_LEN} bytes)"
                    )))
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::Protocol(format!("reading from xenstored: {e}"))),
            }
        }
        let word = |i: usize| u32::from_ne_bytes(h[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
        let (kind, req_id, tx_id, len) = (word(0), word(1), word(2), word(3) as usize);
        let kind = MsgType::from_u32(kind)
            .ok_or_else(|| Error::Protocol(format!("unknown message type {kind}")))?;
        if len > PAYLOAD_MAX {
            return Err(Error::Protocol(format!(
                "message of {len} bytes exceeds the {PAYLOAD_MAX}-byte payload limit"
            )));
        }
        let mut payload = vec![0u8; len];
        r.read_exact(&mut payload)
            .map_err(|e| Error::Protocol(format!("truncated message: {e}")))?;
        Ok(Some(Msg {
            kind,
            req_id,
            tx_id,
            payload,
        }))
    }
}

/// `a\0b\0`: the argument list of most requests.
pub fn nul_strings(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(p);
        out.push(0);
    }
    out
}

/// Splits `a\0b\0` into its strings; the trailing NUL is required, empty strings are kept.
/// At most `MAX_ENTRIES` strings: a payload of NULs would otherwise cost a `String` per byte.
pub fn split_nul_strings(payload: &[u8]) -> Result<Vec<String>, Error> {
    if payload.is_empty() {
        return Ok(Vec::new());
    }
    let body = payload
        .strip_suffix(&[0])
        .ok_or_else(|| Error::Protocol("string list without its final NUL".into()))?;
    let count = body.split(|&b| b == 0).count();
    if count > MAX_ENTRIES {
        return Err(Error::Protocol(format!(
            "string list of {count} entries, at most {MAX_ENTRIES}"
        )));
    }
    let mut out = Vec::with_capacity(count);
    for s in body.split(|&b| b == 0) {
        let s = std::str::from_utf8(s)
            .map_err(|_| Error::Protocol("string list is not UTF-8".into()))?;
        out.push(s.to_string());
    }
    Ok(out)
}

/// Bytes from the other end, for an error message: escaped, cut to 64 characters.
pub fn quote(bytes: &[u8]) -> String {
    const MAX: usize = 64;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX)]);
    let escaped: String = text.escape_debug().collect();
    let mut out: String = escaped.chars().take(MAX).collect();
    if bytes.len() > MAX || escaped.len() > out.len() {
        out.push_str("...");
    }
    format!("\"{out}\"")
}

/// xenstored's error replies carry an errno name (xsd_errors).
pub fn errno_from_name(name: &str) -> i32 {
    match name {
        "EINVAL" => libc::EINVAL,
        "EACCES" => libc::EACCES,
        "EEXIST" => libc::EEXIST,
        "EISDIR" => libc::EISDIR,
        "ENOENT" => libc::ENOENT,
        "ENOMEM" => libc::ENOMEM,
        "ENOSPC" => libc::ENOSPC,
        "EIO" => libc::EIO,
        "ENOTEMPTY" => libc::ENOTEMPTY,
        "ENOSYS" => libc::ENOSYS,
        "EROFS" => libc::EROFS,
        "EBUSY" => libc::EBUSY,
        "EAGAIN" => libc::EAGAIN,
        "EISCONN" => libc::EISCONN,
        "E2BIG" => libc::E2BIG,
        "EPERM" => libc::EPERM,
        _ => libc::EIO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_with_the_documented_header() {
        let m = Msg {
            kind: MsgType::Write,
            req_id: 7,
            tx_id: 3,
            payload: nul_strings(&[b"/a/b"])
                .into_iter()
                .chain(*b"value")
                .collect(),
        };
        let bytes = m.encode().unwrap();
        assert_eq!(&bytes[..4], &11u32.to_ne_bytes());
        assert_eq!(&bytes[4..8], &7u32.to_ne_bytes());
        assert_eq!(&bytes[8..12], &3u32.to_ne_bytes());
        assert_eq!(&bytes[12..16], &10u32.to_ne_bytes());
        assert_eq!(&bytes[16..], b"/a/b\0value");
        assert_eq!(Msg::read_from(&mut &bytes[..]).unwrap(), Some(m));
        assert_eq!(Msg::read_from(&mut &[][..]).unwrap(), None);
    }

    #[test]
    fn oversized_truncated_and_unknown_messages_are_refused() {
        let big = Msg {
            kind: MsgType::Write,
            req_id: 1,
            tx_id: 0,
            payload: vec![b'x'; PAYLOAD_MAX + 1],
        };
        assert!(big
            .encode()
            .unwrap_err()
            .to_string()
            .contains("payload limit"));
        let mut h = Vec::new();
        for v in [2u32, 1, 0, 5000] {
            h.extend_from_slice(&v.to_ne_bytes());
        }
        assert!(Msg::read_from(&mut &h[..])
            .unwrap_err()
            .to_string()
            .contains("5000 bytes"));
        let mut h = Vec::new();
        for v in [2u32, 1, 0, 10] {
            h.extend_from_slice(&v.to_ne_bytes());
        }
        h.extend_from_slice(b"abc");
        assert!(Msg::read_from(&mut &h[..])
            .unwrap_err()
            .to_string()
            .contains("truncated"));
        let mut h = Vec::new();
        for v in [99u32, 1, 0, 0] {
            h.extend_from_slice(&v.to_ne_bytes());
        }
        assert!(Msg::read_from(&mut &h[..])
            .unwrap_err()
            .to_string()
            .contains("unknown message type 99"));
    }

    #[test]
    fn string_lists_need_their_final_nul() {
        assert_eq!(split_nul_strings(b"a\0\0b\0").unwrap(), ["a", "", "b"]);
        assert_eq!(split_nul_strings(b"").unwrap(), Vec::<String>::new());
        assert!(split_nul_strings(b"a\0b").is_err());
        assert!(split_nul_strings(b"\xff\0").is_err());
        assert_eq!(errno_from_name("EAGAIN"), libc::EAGAIN);
        assert_eq!(errno_from_name("bogus"), libc::EIO);
    }
}
