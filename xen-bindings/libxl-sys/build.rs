//! Generates the bindings from the system headers (libxen-dev) and links libxl, libxlutil (the
//! xl.cfg parser `hx create` uses) and xentoollog.
//! Needs libclang (libclang-dev); no Xen is needed to build or link.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=wrapper.h");
    for lib in ["xenlight", "xlutil", "xentoollog"] {
        println!("cargo:rustc-link-lib={lib}");
    }
    let bindings = bindgen::Builder::default()
        .header("wrapper.h")
        .allowlist_function("libxl_.*")
        .allowlist_function("xtl_.*")
        .allowlist_function("xlu_.*")
        .allowlist_type("XLU_.*")
        .allowlist_function("open_memstream")
        .allowlist_function("fclose")
        .allowlist_function("fflush")
        .allowlist_function("vasprintf")
        .allowlist_type("libxl_.*")
        .allowlist_type("xentoollog_.*")
        .allowlist_var("LIBXL_.*")
        .allowlist_var("libxl_.*")
        .allowlist_var("ERROR_.*")
        // The JSON generators take yajl handles (yajl is libxl's, hx does not link it); the
        // `*_to_json`/`*_from_json` entry points take and return plain C strings and stay.
        .blocklist_function(".*_gen_json")
        .blocklist_function("libxl_.*_parse_json")
        .blocklist_type("yajl_.*")
        .blocklist_type("libxl__json_object")
        .derive_default(true)
        .prepend_enum_name(false)
        .layout_tests(false)
        .generate()
        .expect("bindgen failed on libxl.h: is libxen-dev installed?");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("writing bindings");
}
