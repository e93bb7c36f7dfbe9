//! Where templates come from: a set of templates is a `base/` directory every template
//! starts from, plus one directory per template whose files are added to it, replacing the
//! base files with the same path (`templates/README.md` describes the layout). The set is
//! either built in (the repository's `templates/`) or read from a directory.

use std::path::Path;

use crate::render::Files;

include!(concat!(env!("OUT_DIR"), "/templates.rs"));

/// The directory of files every template starts from; not a template itself.
pub const BASE: &str = "base";

/// `templates/README.md`: the layout and rendering rules, exported with the templates.
pub const README: &str = include_str!("../../templates/README.md");

/// A template ready to render: the base files overlaid with the template's own.
pub struct Template {
    /// Its name: the template's `{{#if NAME}}` condition that holds while rendering it (next
    /// to the database's, `{{#if sqlite}}` or `{{#if postgres}}`).
    pub name: String,
    /// Every template of its set: the names a `{{#if NAME}}` condition may use.
    pub names: Vec<String>,
    /// Path inside the new project (not yet rendered) → contents.
    pub files: Files,
}

/// The built-in templates' names (`base` is not one).
pub fn built_in_names() -> Vec<&'static str> {
    let mut names: Vec<&str> = BUILT_IN
        .iter()
        .map(|(dir, _, _)| *dir)
        .filter(|dir| *dir != BASE)
        .collect();
    names.dedup();
    names
}

/// The files of one built-in directory (`base` or a template), unmerged.
fn built_in_dir(dir: &str) -> Files {
    BUILT_IN
        .iter()
        .filter(|(d, _, _)| *d == dir)
        .map(|(_, path, text)| ((*path).to_owned(), (*text).to_owned()))
        .collect()
}

/// A built-in template, merged with the built-in base.
pub fn built_in(name: &str) -> Option<Template> {
    let names = built_in_names();
    if !names.contains(&name) {
        return None;
    }
    Some(Template {
        name: name.to_owned(),
        names: names.iter().map(|n| (*n).to_owned()).collect(),
        files: overlay(built_in_dir(BASE), built_in_dir(name)),
    })
}

/// The built-in set as it is laid out (`README.md`, `base/...`, `<template>/...`), for
/// writing out to edit.
pub fn built_in_tree() -> Files {
    let mut files: Files = BUILT_IN
        .iter()
        .map(|(dir, path, text)| (format!("{dir}/{path}"), (*text).to_owned()))
        .collect();
    files.insert("README.md".to_owned(), README.to_owned());
    files
}

/// Template `name` of the set in `dir` (`<dir>/base/...`, `<dir>/<name>/...`), merged with
/// `<dir>/base` when there is one.
pub fn from_dir(dir: &Path, name: &str) -> Result<Template, String> {
    let names = template_dirs(dir);
    let root = dir.join(name);
    if name == BASE {
        return Err(format!(
            "`{BASE}` is not a template: it holds the files every template in {} starts from",
            dir.display()
        ));
    }
    if !root.is_dir() {
        return Err(format!(
            "template `{name}` not found: expected the directory {} (templates in {}: {})",
            root.display(),
            dir.display(),
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        ));
    }
    let base = dir.join(BASE);
    let mut base_files = Files::new();
    if base.is_dir() {
        read_tree(&base, &base, &mut base_files)
            .map_err(|e| format!("reading {}: {e}", base.display()))?;
    }
    let mut own = Files::new();
    read_tree(&root, &root, &mut own).map_err(|e| format!("reading {}: {e}", root.display()))?;
    let files = overlay(base_files, own);
    if !files.contains_key("Cargo.toml.tmpl") {
        return Err(format!(
            "template `{name}` has no Cargo.toml.tmpl (in neither {} nor {})",
            base.display(),
            root.display()
        ));
    }
    Ok(Template {
        name: name.to_owned(),
        names,
        files,
    })
}

/// `base` with `own` added, each file of `own` replacing the one of `base` at its path.
fn overlay(mut base: Files, own: Files) -> Files {
    base.extend(own);
    base
}

/// The templates in `dir`: its subdirectories but `base` and hidden ones, sorted.
fn template_dirs(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.path().is_dir())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n != BASE && !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn read_tree(root: &Path, dir: &Path, files: &mut Files) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            read_tree(root, &path, files)?;
        } else {
            let rel = path
                .strip_prefix(root)
                .map_err(std::io::Error::other)?
                .to_string_lossy()
                .replace('\\', "/");
            let text = std::fs::read_to_string(&path)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            files.insert(rel, text);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_templates_share_the_base() {
        assert_eq!(built_in_names(), ["grpc", "http"]);
        assert!(built_in(BASE).is_none() && built_in("nope").is_none());
        let http = built_in("http").unwrap();
        let grpc = built_in("grpc").unwrap();
        assert_eq!(http.names, ["grpc", "http"]);
        for t in [&http, &grpc] {
            for shared in ["Cargo.toml.tmpl", "src/main.rs", "src/lib.rs", "Dockerfile"] {
                assert!(t.files.contains_key(shared), "{}: no {shared}", t.name);
            }
        }
        assert!(
            http.files.contains_key("src/handler.rs") && !http.files.contains_key("src/api.rs")
        );
        assert!(
            grpc.files.contains_key("src/api.rs") && !grpc.files.contains_key("src/handler.rs")
        );
        let tree = built_in_tree();
        assert!(tree.contains_key("README.md") && tree.contains_key("base/src/main.rs"));
        assert!(tree.contains_key("grpc/proto/{{name_snake}}.proto"));
    }

    fn write(root: &Path, path: &str, text: &str) {
        let full = root.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, text).unwrap();
    }

    #[test]
    fn a_directory_overlays_the_template_on_its_base() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "base/Cargo.toml.tmpl", "base manifest");
        write(dir.path(), "base/README.md", "base readme");
        write(dir.path(), "web/README.md", "web readme");
        write(dir.path(), "web/src/web.rs", "web only");
        std::fs::create_dir(dir.path().join("cli")).unwrap();

        let web = from_dir(dir.path(), "web").unwrap();
        assert_eq!(web.names, ["cli", "web"]);
        let files: Vec<(&str, &str)> = web
            .files
            .iter()
            .map(|(p, t)| (p.as_str(), t.as_str()))
            .collect();
        assert_eq!(
            files,
            [
                ("Cargo.toml.tmpl", "base manifest"),
                ("README.md", "web readme"),
                ("src/web.rs", "web only")
            ]
        );
        assert_eq!(from_dir(dir.path(), "cli").unwrap().files.len(), 2);
        let err = from_dir(dir.path(), BASE).err().unwrap();
        assert!(err.contains("not a template"), "{err}");
        let err = from_dir(dir.path(), "grpc").err().unwrap();
        assert!(
            err.contains("template `grpc` not found") && err.contains("cli, web"),
            "{err}"
        );
    }

    #[test]
    fn a_directory_without_base_needs_complete_templates() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "full/Cargo.toml.tmpl", "manifest");
        write(dir.path(), "part/src/lib.rs", "lib");
        assert_eq!(from_dir(dir.path(), "full").unwrap().files.len(), 1);
        let err = from_dir(dir.path(), "part").err().unwrap();
        assert!(err.contains("no Cargo.toml.tmpl"), "{err}");
    }
}
