//! Copies the built demo page (demo/dist, made by `npm run build` in demo/) into OUT_DIR so
//! the binary can embed it. Without a build, a placeholder page explains how to make one.

use std::path::{Path, PathBuf};

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

fn main() -> std::io::Result<()> {
    let manifest =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").map_err(std::io::Error::other)?);
    let dist = manifest.join("../../demo/dist");
    let out = PathBuf::from(std::env::var("OUT_DIR").map_err(std::io::Error::other)?).join("demo");
    // Watch the build when there is one; otherwise the demo folder, so that a later build is
    // noticed (watching a path that does not exist would rerun this script, and rebuild the
    // crate, on every cargo command).
    if dist.exists() {
        println!("cargo:rerun-if-changed={}", dist.display());
    } else {
        println!(
            "cargo:rerun-if-changed={}",
            manifest.join("../../demo").display()
        );
    }
    if out.exists() {
        std::fs::remove_dir_all(&out)?;
    }
    if dist.join("index.html").exists() {
        copy_dir(&dist, &out)?;
    } else {
        std::fs::create_dir_all(&out)?;
        std::fs::write(
            out.join("index.html"),
            "<!doctype html><title>Belfry demo</title><h1>Belfry demo</h1>\
             <p>The demo page has not been built. Run <code>scripts/demo.sh</code>, or \
             <code>npm ci &amp;&amp; npm run build</code> in <code>clients/js</code> and \
             <code>demo</code>, then rebuild Belfry.</p>",
        )?;
    }
    Ok(())
}
