//! A crate depending on truss with default features builds without `protoc`: only the `etcd`
//! feature (etcd-client's build script) needs protoc and the protobuf include files.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

#[test]
fn default_features_build_without_protoc() {
    let repo = repo();
    let dir = tempfile::tempdir().expect("temp dir");
    let probe = dir.path().join("probe");
    std::fs::create_dir_all(probe.join("src")).expect("src dir");
    let framework = repo.join("framework");
    std::fs::write(
        probe.join("Cargo.toml"),
        format!(
            "[package]\nname = \"default-build-probe\"\nversion = \"0.0.0\"\nedition = \"2024\"\n\
             publish = false\n\n[dependencies]\ntruss = {{ path = {:?} }}\n\n[workspace]\n",
            framework.display().to_string()
        ),
    )
    .expect("manifest");
    std::fs::write(
        probe.join("src/main.rs"),
        "fn main() {\n    let _builder = truss::App::builder(\"probe\");\n}\n",
    )
    .expect("main.rs");
    // The workspace's lock file, so the probe builds the same versions, offline.
    std::fs::copy(repo.join("Cargo.lock"), probe.join("Cargo.lock")).expect("lock file");

    // A `protoc` that fails loudly, first on PATH and named by PROTOC.
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).expect("bin dir");
    let stub = bin.join("protoc");
    std::fs::write(
        &stub,
        "#!/bin/sh\necho 'PROTOC WAS CALLED by a default-features build' >&2\nexit 1\n",
    )
    .expect("stub");
    let mut perms = std::fs::metadata(&stub).expect("stub").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&stub, perms).expect("chmod");
    let path = std::env::join_paths(std::iter::once(bin.clone()).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .expect("PATH");

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .args(["build", "--offline", "--quiet"])
        .current_dir(&probe)
        .env("PATH", path)
        .env("PROTOC", &stub)
        // Shared with the scaffolding tests, which build truss with default features too.
        .env("CARGO_TARGET_DIR", repo.join("target/scaffold"))
        .output()
        .expect("run cargo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("PROTOC WAS CALLED"),
        "a default-features build ran protoc:\n{stderr}"
    );
    assert!(out.status.success(), "probe build failed:\n{stderr}");

    let tree = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
        .args([
            "tree",
            "--offline",
            "--prefix",
            "none",
            "-e",
            "normal,build",
        ])
        .current_dir(&probe)
        .output()
        .expect("cargo tree");
    let tree = String::from_utf8_lossy(&tree.stdout);
    assert!(tree.contains("truss v"), "{tree}");
    assert!(
        !tree.contains("etcd-client") && !tree.contains("prost-build"),
        "default features pull a protoc-dependent crate:\n{tree}"
    );
}
