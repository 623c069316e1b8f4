//! Stamps the source revision into `vigia_build_info{revision}`: `VIGIA_REVISION` from
//! the environment when set (the Dockerfile's build argument: its context has no .git),
//! else `git rev-parse --short HEAD` in a git checkout, else `unknown`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=VIGIA_REVISION");
    let (revision, source) = match std::env::var("VIGIA_REVISION") {
        Ok(r) if !clean(&r).is_empty() => (clean(&r), "env"),
        _ => match git_revision() {
            Some(r) => (r, "git"),
            None => ("unknown".to_string(), "none"),
        },
    };
    println!("cargo:rustc-env=VIGIA_REVISION={revision}");
    // For the kit's own test of where the revision came from.
    println!("cargo:rustc-env=VIGIA_REVISION_SOURCE={source}");
}

/// One line of printable text: it goes into an environment variable and a label value.
fn clean(s: &str) -> String {
    s.trim().chars().filter(|c| !c.is_control()).collect()
}

fn git_revision() -> Option<String> {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?);
    let dot_git = manifest_dir
        .ancestors()
        .map(|d| d.join(".git"))
        .find(|p| p.exists())?;
    watch_head(&dot_git);
    let out = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(&manifest_dir)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let rev = clean(&String::from_utf8(out.stdout).ok()?);
    (!rev.is_empty()).then_some(rev)
}

/// Rebuilds when HEAD moves: a checkout changes `HEAD`, a commit changes the branch's ref
/// file (or `packed-refs`). Only existing files are named: Cargo reruns a build script on
/// every build when a file it watches is missing.
fn watch_head(dot_git: &Path) {
    // A worktree or submodule has a `.git` file: `gitdir: <path>`.
    let git_dir = if dot_git.is_file() {
        let Some(dir) = std::fs::read_to_string(dot_git).ok().and_then(|text| {
            text.trim()
                .strip_prefix("gitdir:")
                .map(|p| dot_git.parent().unwrap_or(Path::new(".")).join(p.trim()))
        }) else {
            return;
        };
        dir
    } else {
        dot_git.to_path_buf()
    };
    // Branch refs live in the common dir, which a worktree names in `commondir`.
    let common_dir = std::fs::read_to_string(git_dir.join("commondir"))
        .map(|p| git_dir.join(p.trim()))
        .unwrap_or_else(|_| git_dir.clone());
    let mut watched = vec![git_dir.join("HEAD"), common_dir.join("packed-refs")];
    if let Some(branch) = std::fs::read_to_string(git_dir.join("HEAD"))
        .ok()
        .and_then(|head| {
            head.trim()
                .strip_prefix("ref:")
                .map(|r| r.trim().to_string())
        })
    {
        watched.push(common_dir.join(branch));
    }
    for path in watched.into_iter().filter(|p| p.is_file()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
