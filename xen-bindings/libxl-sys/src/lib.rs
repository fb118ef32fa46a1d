//! Raw bindings to Debian's libxen-dev: libxl (API version 0x041400) and xentoollog
//! (xenstore is spoken natively by `xen-bindings`). Use the `xen-bindings` crate above this one.
#![allow(
    non_upper_case_globals,
    non_camel_case_types,
    non_snake_case,
    dead_code,
    clippy::all
)]
include!(concat!(env!("OUT_DIR"), "/bindings.rs"));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_and_initialises_a_domain_config_without_xen() {
        // SAFETY: init/dispose pair on a zeroed struct, as libxl requires; no hypervisor needed.
        unsafe {
            let mut cfg: libxl_domain_config = std::mem::zeroed();
            libxl_domain_config_init(&mut cfg);
            libxl_domain_build_info_init_type(&mut cfg.b_info, LIBXL_DOMAIN_TYPE_PVH);
            assert_eq!(cfg.b_info.type_, LIBXL_DOMAIN_TYPE_PVH);
            libxl_domain_config_dispose(&mut cfg);
        }
    }
}
