//! Embeds every file in the directories of `../templates` (`base/` and one per template) in
//! the binary. Files directly in `../templates` (its README) are not part of any template.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            walk(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(&std::env::var("CARGO_MANIFEST_DIR")?).join("../templates");
    let root = root.canonicalize()?;
    let mut files = Vec::new();
    walk(&root, &mut files)?;
    files.sort();
    let mut code = String::from(
        "/// (`base` or a template, path inside that directory, contents)\npub static BUILT_IN: &[(&str, &str, &str)] = &[\n",
    );
    for file in &files {
        let rel = file.strip_prefix(&root)?;
        if rel.components().count() < 2 {
            continue;
        }
        let mut parts = rel.components();
        let template = parts
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .ok_or("bad template path")?;
        let inner = parts.as_path().to_str().ok_or("non-UTF-8 template path")?;
        let abs = file.to_str().ok_or("non-UTF-8 template path")?;
        writeln!(
            code,
            "    ({template:?}, {inner:?}, include_str!({abs:?})),"
        )?;
        println!("cargo:rerun-if-changed={abs}");
    }
    code.push_str("];\n");
    println!("cargo:rerun-if-changed={}", root.display());
    std::fs::write(
        Path::new(&std::env::var("OUT_DIR")?).join("templates.rs"),
        code,
    )?;
    Ok(())
}
