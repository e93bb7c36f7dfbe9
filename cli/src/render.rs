//! Rendering a template into a new directory: all in memory first, then written to a
//! temporary sibling directory and renamed into place, so a failure leaves nothing behind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::names;

include!(concat!(env!("OUT_DIR"), "/templates.rs"));

/// The template files: path inside the template → contents.
pub type Files = BTreeMap<String, String>;

/// The built-in templates' names.
pub fn built_in_names() -> Vec<&'static str> {
    let mut names: Vec<&str> = BUILT_IN.iter().map(|(t, _, _)| *t).collect();
    names.dedup();
    names
}

/// A built-in template's files.
pub fn built_in(template: &str) -> Option<Files> {
    let files: Files = BUILT_IN
        .iter()
        .filter(|(t, _, _)| *t == template)
        .map(|(_, path, text)| ((*path).to_owned(), (*text).to_owned()))
        .collect();
    (!files.is_empty()).then_some(files)
}

/// A template from a directory of templates (`<dir>/<template>/...`).
pub fn from_dir(dir: &Path, template: &str) -> Result<Files, String> {
    let root = dir.join(template);
    if !root.join("Cargo.toml.tmpl").is_file() {
        let available: Vec<String> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter(|e| e.path().join("Cargo.toml.tmpl").is_file())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        return Err(format!(
            "template `{template}` not found: expected {} (templates in {}: {})",
            root.join("Cargo.toml.tmpl").display(),
            dir.display(),
            if available.is_empty() {
                "none".to_owned()
            } else {
                available.join(", ")
            }
        ));
    }
    let mut files = Files::new();
    read_tree(&root, &root, &mut files).map_err(|e| format!("reading {}: {e}", root.display()))?;
    Ok(files)
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

/// The values substituted into templates.
pub struct Vars {
    values: Vec<(&'static str, String)>,
}

impl Vars {
    /// `{{name}}`, `{{name_snake}}`, `{{Name}}` from `name`; `{{truss_dep}}` as given.
    pub fn new(name: &str, truss_dep: String) -> Self {
        Self {
            values: vec![
                ("name", name.to_owned()),
                ("name_snake", names::snake(name)),
                ("Name", names::pascal(name)),
                ("truss_dep", truss_dep),
            ],
        }
    }

    /// Replaces every `{{var}}`; an unknown one is an error naming it.
    pub fn apply(&self, text: &str, file: &str) -> Result<String, String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else {
                out.push_str(&rest[start..]);
                return Ok(out);
            };
            let key = &after[..end];
            let is_var =
                !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !is_var {
                out.push_str("{{");
                rest = after;
                continue;
            }
            match self.values.iter().find(|(k, _)| *k == key) {
                Some((_, v)) => out.push_str(v),
                None => {
                    return Err(format!(
                        "{file}: unknown placeholder {{{{{key}}}}} (known: {})",
                        self.values
                            .iter()
                            .map(|(k, _)| format!("{{{{{k}}}}}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
            rest = &after[end + 2..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// Renders paths and contents (`Cargo.toml.tmpl` → `Cargo.toml`).
pub fn render(files: &Files, vars: &Vars) -> Result<Files, String> {
    let mut out = Files::new();
    for (path, text) in files {
        let path = vars.apply(path, path)?;
        let path = path.strip_suffix(".tmpl").unwrap_or(&path).to_owned();
        if path.split('/').any(|p| p == ".." || p.is_empty()) {
            return Err(format!(
                "template path `{path}` leaves the project directory"
            ));
        }
        out.insert(path.clone(), vars.apply(text, &path)?);
    }
    Ok(out)
}

/// Writes `files` as the new directory `target`, all or nothing.
pub fn write_new_dir(target: &Path, files: &Files) -> Result<(), String> {
    if target.exists() {
        return Err(format!(
            "{} already exists; choose another name or remove it first",
            target.display()
        ));
    }
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        return Err(format!("{} is not a directory", parent.display()));
    }
    let file_name = target
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{} is not a usable directory name", target.display()))?;
    let staging = parent.join(format!(".{file_name}.truss-{}", std::process::id()));
    let result = write_all(&staging, files).and_then(|()| {
        std::fs::rename(&staging, target)
            .map_err(|e| format!("moving {} into place: {e}", target.display()))
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result
}

fn write_all(root: &Path, files: &Files) -> Result<(), String> {
    std::fs::create_dir(root).map_err(|e| format!("creating {}: {e}", root.display()))?;
    for (path, text) in files {
        let full = root.join(path);
        if let Some(dir) = full.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        }
        std::fs::write(&full, text).map_err(|e| format!("writing {}: {e}", full.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutes_and_refuses_unknown_placeholders() {
        let vars = Vars::new("user-service", "truss = \"0.1\"".into());
        assert_eq!(
            vars.apply("{{name}} {{name_snake}} {{Name}} {{ not a var }}", "f")
                .unwrap(),
            "user-service user_service UserService {{ not a var }}"
        );
        let err = vars.apply("{{nmae}}", "src/main.rs").unwrap_err();
        assert!(
            err.contains("src/main.rs") && err.contains("{{nmae}}"),
            "{err}"
        );
    }

    #[test]
    fn built_in_templates_are_embedded() {
        assert_eq!(built_in_names(), ["grpc", "http"]);
        let http = built_in("http").unwrap();
        assert!(http.contains_key("Cargo.toml.tmpl") && http.contains_key("src/main.rs"));
    }
}
