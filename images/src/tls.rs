//! TLS for registries: reqwest's rustls with ring as the process's crypto provider. The roots
//! come from the system (Debian's ca-certificates) through rustls' platform verifier, read on
//! the first HTTPS connection — a pull from a plain-HTTP registry, or one that finds its image
//! in the store, reads none (OpenSSL read and parsed the whole bundle, ~100 ms, for every
//! client made). docs/dependencies.md.

/// Installs the crypto provider once; every registry client is made after it.
pub fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err: a provider is installed already (another part of the process did it). ring is
        // deprecated in rustls for want of post-quantum key exchange; aws-lc-rs has it.
        #[allow(deprecated)]
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
