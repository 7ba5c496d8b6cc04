//! Puts the right `memory.x` on the linker's search path for the target being built.
use std::{env, fs, path::PathBuf};

fn main() {
    let target = env::var("TARGET").unwrap_or_default();
    // The cost benchmark runs its Cortex-M0 build on the MPS2 board too: QEMU's only M0
    // board, the micro:bit, has 16 KiB of RAM.
    let mps2 = env::var_os("CARGO_FEATURE_COST").is_some();
    let memory = if target.starts_with("thumbv6m") && !mps2 {
        // micro:bit (nRF51822, Cortex-M0): 256 KiB flash, 16 KiB RAM.
        "MEMORY\n{\n  FLASH : ORIGIN = 0x00000000, LENGTH = 256K\n  RAM : ORIGIN = 0x20000000, LENGTH = 16K\n}\n"
    } else {
        // mps2-an386: 4 MiB code memory, 4 MiB RAM.
        "MEMORY\n{\n  FLASH : ORIGIN = 0x00000000, LENGTH = 4M\n  RAM : ORIGIN = 0x20000000, LENGTH = 4M\n}\n"
    };
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::write(out.join("memory.x"), memory).expect("OUT_DIR is writable");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo::rustc-check-cfg=cfg(board_m0)");
    if target.starts_with("thumbv6m") {
        println!("cargo::rustc-cfg=board_m0");
    }
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
    if env::var_os("CARGO_FEATURE_LOG").is_some() {
        println!("cargo:rustc-link-arg-bins=-Tdefmt.x");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
