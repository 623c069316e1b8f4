//! Helpers for the status board tests: a headless Chromium driven over the DevTools
//! protocol, and where screenshots go.

#![allow(dead_code)]

pub mod cdp;

use std::path::PathBuf;

/// `target/test-output/board/`, created if missing: screenshots land here for a human to
/// look at (the folder is gitignored with the rest of `target/`).
pub fn output_dir() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let target = tmp.parent().expect("CARGO_TARGET_TMPDIR has a parent");
    let dir = target.join("test-output").join("board");
    std::fs::create_dir_all(&dir).expect("create test output dir");
    dir
}
