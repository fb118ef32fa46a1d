//! xl's save file format (tools/xl/xl.h, xl_saverestore.c in Xen 4.17), so that `xl restore`
//! reads the files `hx domain save` writes and `hx domain restore` reads xl's:
//!
//! ```text
//! magic              32 bytes  "Xen saved domain, xl format\n \0 \r"
//! byteorder          u32       0x01020304 in the writer's byte order
//! mandatory_flags    u32       bit 0: the config is JSON; bit 1: libxl stream v2
//! optional_flags     u32
//! optional_data_len  u32
//! optional data      optional_data_len bytes: u32 config_len, then config_len bytes
//!                    (libxl_domain_config as JSON, NUL-terminated)
//! libxl's stream     to the end of the file (libxl reads and checks it)
//! ```
//!
//! A save file is hostile input: every field is checked before anything is allocated, the
//! config is bounded (`MAX_CONFIG_LEN`), must be the only optional data, NUL-terminated UTF-8
//! with no other NUL; files in the other byte order, with unknown mandatory flags, or with a
//! legacy (v1) stream are refused by name. Plain Rust, no libxl: tested everywhere.
use std::io::{Read, Write};

pub const MAGIC: [u8; 32] = *b"Xen saved domain, xl format\n \0 \r";
pub const BYTEORDER: u32 = 0x0102_0304;
pub const FLAG_JSON: u32 = 1 << 0;
pub const FLAG_STREAM_V2: u32 = 1 << 1;
const KNOWN_MANDATORY: u32 = FLAG_JSON | FLAG_STREAM_V2;
pub const HEADER_LEN: usize = 48;
/// Largest config accepted: libxl's JSON for a domain is a few KiB.
pub const MAX_CONFIG_LEN: u32 = 1 << 20;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SaveFileError {
    #[error("not an xl save file (wrong magic number)")]
    Magic,
    #[error("saved on a host of the other byte order (byte order field {0:#010x})")]
    ByteOrder(u32),
    #[error("mandatory flag(s) {0:#x} unknown to this version")]
    MandatoryFlags(u32),
    #[error("a legacy (v1) libxl stream: only v2 streams (Xen 4.6 and later) are restored")]
    LegacyStream,
    #[error("the optional data is {0} bytes, more than a config needs (at most {max})", max = MAX_CONFIG_LEN + 4)]
    OptionalDataTooLong(u32),
    #[error("the optional data ({0} bytes) is too short for its config length field")]
    OptionalDataTooShort(u32),
    #[error("config length {config} does not fill the optional data ({optional} bytes)")]
    ConfigLength { config: u32, optional: u32 },
    #[error("the saved config is not JSON (mandatory flag 0x1 missing): give an xl.cfg file")]
    NotJson,
    #[error("the saved config is not NUL-terminated UTF-8 text without other NULs")]
    ConfigText,
    #[error("truncated ({0})")]
    Truncated(&'static str),
    #[error("{0}")]
    Io(String),
}

/// What a save file's header says, after checking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub mandatory_flags: u32,
    pub optional_flags: u32,
    /// The domain's config JSON (without its NUL), if the file carries one.
    pub config_json: Option<String>,
}

fn read_exact(r: &mut impl Read, buf: &mut [u8], what: &'static str) -> Result<(), SaveFileError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => SaveFileError::Truncated(what),
        _ => SaveFileError::Io(format!("reading the {what}: {e}")),
    })
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// Reads and checks the header and optional data, leaving `r` at the start of libxl's stream.
pub fn read_header(r: &mut impl Read) -> Result<Header, SaveFileError> {
    let mut h = [0u8; HEADER_LEN];
    read_exact(r, &mut h, "header")?;
    if h[..32] != MAGIC {
        return Err(SaveFileError::Magic);
    }
    let byteorder = u32_at(&h, 32);
    if byteorder != BYTEORDER {
        return Err(SaveFileError::ByteOrder(byteorder));
    }
    let mandatory_flags = u32_at(&h, 36);
    let optional_flags = u32_at(&h, 40);
    let optional_len = u32_at(&h, 44);
    let unknown = mandatory_flags & !KNOWN_MANDATORY;
    if unknown != 0 {
        return Err(SaveFileError::MandatoryFlags(unknown));
    }
    if mandatory_flags & FLAG_STREAM_V2 == 0 {
        return Err(SaveFileError::LegacyStream);
    }
    if optional_len > MAX_CONFIG_LEN + 4 {
        return Err(SaveFileError::OptionalDataTooLong(optional_len));
    }
    let mut config_json = None;
    if optional_len > 0 {
        if optional_len < 4 {
            return Err(SaveFileError::OptionalDataTooShort(optional_len));
        }
        let mut len = [0u8; 4];
        read_exact(r, &mut len, "config length")?;
        let config_len = u32::from_ne_bytes(len);
        // xl writes the config as the only optional data; anything else is refused rather
        // than guessed at.
        if config_len != optional_len - 4 {
            return Err(SaveFileError::ConfigLength {
                config: config_len,
                optional: optional_len,
            });
        }
        if config_len > 0 {
            if mandatory_flags & FLAG_JSON == 0 {
                return Err(SaveFileError::NotJson);
            }
            let mut data = vec![0u8; config_len as usize];
            read_exact(r, &mut data, "config")?;
            config_json = Some(config_text(data)?);
        }
    }
    Ok(Header {
        mandatory_flags,
        optional_flags,
        config_json,
    })
}

fn config_text(mut data: Vec<u8>) -> Result<String, SaveFileError> {
    if data.pop() != Some(0) || data.contains(&0) {
        return Err(SaveFileError::ConfigText);
    }
    String::from_utf8(data).map_err(|_| SaveFileError::ConfigText)
}

/// The header and optional data xl writes before libxl's stream, for `config_json` (libxl's
/// JSON of the domain's config).
pub fn header_bytes(config_json: &str) -> Result<Vec<u8>, SaveFileError> {
    if config_json.contains('\0') {
        return Err(SaveFileError::ConfigText);
    }
    let config_len = u32::try_from(config_json.len() + 1)
        .ok()
        .filter(|&n| n <= MAX_CONFIG_LEN)
        .ok_or(SaveFileError::OptionalDataTooLong(u32::MAX))?;
    let mut out = Vec::with_capacity(HEADER_LEN + 4 + config_len as usize);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&BYTEORDER.to_ne_bytes());
    out.extend_from_slice(&(FLAG_STREAM_V2 | FLAG_JSON).to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(&(config_len + 4).to_ne_bytes());
    out.extend_from_slice(&config_len.to_ne_bytes());
    out.extend_from_slice(config_json.as_bytes());
    out.push(0);
    Ok(out)
}

/// Writes `header_bytes` to `w`.
pub fn write_header(w: &mut impl Write, config_json: &str) -> Result<(), SaveFileError> {
    let b = header_bytes(config_json)?;
    w.write_all(&b)
        .map_err(|e| SaveFileError::Io(format!("writing the header: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CFG: &str = "{\n    \"c_info\": {\n        \"name\": \"xa\"\n    }\n}\n";

    #[test]
    fn round_trip_leaves_the_reader_at_the_stream() {
        let mut f = header_bytes(CFG).unwrap();
        f.extend_from_slice(b"STREAM");
        let mut r = &f[..];
        let h = read_header(&mut r).unwrap();
        assert_eq!(h.config_json.as_deref(), Some(CFG));
        assert_eq!(h.mandatory_flags, FLAG_JSON | FLAG_STREAM_V2);
        assert_eq!(r, b"STREAM");
    }

    #[test]
    fn layout_is_xls() {
        let f = header_bytes("{}").unwrap();
        assert_eq!(&f[..32], b"Xen saved domain, xl format\n \0 \r");
        assert_eq!(f.len(), 48 + 4 + 3);
        assert_eq!(u32_at(&f, 32), 0x0102_0304);
        assert_eq!(u32_at(&f, 36), 3);
        assert_eq!(u32_at(&f, 40), 0);
        assert_eq!(u32_at(&f, 44), 7);
        assert_eq!(u32_at(&f, 48), 3);
        assert_eq!(&f[52..], b"{}\0");
    }

    fn with(f: &mut [u8], at: usize, v: u32) {
        f[at..at + 4].copy_from_slice(&v.to_ne_bytes());
    }

    #[test]
    fn bad_headers_are_named() {
        let good = header_bytes(CFG).unwrap();
        let check = |f: &[u8], want: SaveFileError| {
            assert_eq!(read_header(&mut &f[..]).unwrap_err(), want);
        };
        let mut f = good.clone();
        f[0] = b'x';
        check(&f, SaveFileError::Magic);
        let mut f = good.clone();
        with(&mut f, 32, BYTEORDER.swap_bytes());
        check(&f, SaveFileError::ByteOrder(BYTEORDER.swap_bytes()));
        let mut f = good.clone();
        with(&mut f, 36, 0x7);
        check(&f, SaveFileError::MandatoryFlags(4));
        let mut f = good.clone();
        with(&mut f, 36, FLAG_JSON);
        check(&f, SaveFileError::LegacyStream);
        let mut f = good.clone();
        with(&mut f, 44, u32::MAX);
        check(&f, SaveFileError::OptionalDataTooLong(u32::MAX));
        let mut f = good.clone();
        with(&mut f, 44, 2);
        check(&f, SaveFileError::OptionalDataTooShort(2));
        let mut f = good.clone();
        with(&mut f, 48, 5);
        check(
            &f,
            SaveFileError::ConfigLength {
                config: 5,
                optional: CFG.len() as u32 + 5,
            },
        );
        let mut f = good.clone();
        with(&mut f, 36, FLAG_STREAM_V2);
        check(&f, SaveFileError::NotJson);
        let mut f = good.clone();
        *f.last_mut().unwrap() = b'x';
        check(&f, SaveFileError::ConfigText);
        let mut f = good.clone();
        f[60] = 0;
        check(&f, SaveFileError::ConfigText);
        check(&good[..40], SaveFileError::Truncated("header"));
        check(&good[..good.len() - 1], SaveFileError::Truncated("config"));
        assert!(header_bytes("a\0b").is_err());
    }

    #[test]
    fn no_config_is_allowed() {
        let mut f = header_bytes("{}").unwrap()[..HEADER_LEN].to_vec();
        with(&mut f, 36, FLAG_STREAM_V2);
        with(&mut f, 44, 0);
        assert_eq!(read_header(&mut &f[..]).unwrap().config_json, None);
    }

    proptest! {
        /// Any bytes: a header or a named error, never a panic, never more read than the
        /// header, the optional data it announces, and nothing beyond.
        #[test]
        fn any_bytes_parse_or_fail_cleanly(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut r = &data[..];
            if let Ok(h) = read_header(&mut r) {
                let consumed = data.len() - r.len();
                let cfg = h.config_json.map_or(0, |c| c.len() + 1);
                // The header, then (if there is optional data) the length field and the config.
                prop_assert!(consumed == HEADER_LEN || consumed == HEADER_LEN + 4 + cfg);
            }
        }

        /// A valid header whose fields are then mutated: still a value or an error.
        #[test]
        fn mutated_headers(cfg in "[ -~]{0,100}", at in 0usize..200, byte in any::<u8>()) {
            let mut f = header_bytes(&cfg).unwrap();
            if at < f.len() { f[at] = byte; }
            let _ = read_header(&mut &f[..]);
        }

        /// Every config text round-trips.
        #[test]
        fn configs_round_trip(cfg in "\\PC{0,200}") {
            let f = header_bytes(&cfg).unwrap();
            let h = read_header(&mut &f[..]).unwrap();
            prop_assert_eq!(h.config_json.as_deref(), Some(cfg.as_str()));
        }
    }
}
