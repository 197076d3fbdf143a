//! Links the `jwtagent` CLI binary as a non-position-independent executable on
//! Linux: the loader then has no relative relocations to apply at every start
//! (about 25,000 in a release build, and some 90 page faults), which is most
//! of what a cached `jwtagent token` costs beyond `/bin/true`. The daemon's
//! binary, `jwtagent-agent`, is left position-independent.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bin=jwtagent=-no-pie");
    }
}
