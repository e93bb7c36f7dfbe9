//! Rendering a template into a new directory: `{{#if NAME}}` sections, then `{{placeholders}}`
//! (the rules are in `templates/README.md`), all in memory first, then written to a temporary
//! sibling directory and renamed into place, so a failure leaves nothing behind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::layout::Template;
use crate::names;

/// The template files: path inside the template → contents.
pub type Files = BTreeMap<String, String>;

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

/// Renders `template`'s paths and contents: sections, placeholders, and `Cargo.toml.tmpl` →
/// `Cargo.toml`.
pub fn render(template: &Template, vars: &Vars) -> Result<Files, String> {
    let mut out = Files::new();
    for (path, text) in &template.files {
        let path = vars.apply(path, path)?;
        let path = path.strip_suffix(".tmpl").unwrap_or(&path).to_owned();
        if path.split('/').any(|p| p == ".." || p.is_empty()) {
            return Err(format!(
                "template path `{path}` leaves the project directory"
            ));
        }
        let text = select(text, &path, &template.name, &template.names)?;
        let text = vars.apply(&text, &path)?;
        if out.insert(path.clone(), text).is_some() {
            return Err(format!("two template files render to `{path}`"));
        }
    }
    Ok(out)
}

const IF: &str = "{{#if";
const ELSE: &str = "{{else}}";
const END: &str = "{{/if}}";

/// A line that opens, splits or closes a section.
enum Directive<'a> {
    If(&'a str),
    Else,
    End,
}

/// The directive `line` is, if it is one (alone on its line, spaces around allowed).
fn directive(line: &str) -> Option<Directive<'_>> {
    let line = line.trim();
    if line == ELSE {
        return Some(Directive::Else);
    }
    if line == END {
        return Some(Directive::End);
    }
    let name = line.strip_prefix(IF)?.strip_suffix("}}")?;
    (name.is_empty() || name.starts_with(' ')).then(|| Directive::If(name.trim()))
}

/// An open section: whether its lines are kept now, whether `{{else}}` was seen, and the
/// line it opened on.
struct Open {
    keep: bool,
    in_else: bool,
    line: usize,
}

/// Keeps the lines that the `{{#if NAME}}` / `{{else}}` / `{{/if}}` sections of `text` select
/// when rendering template `template` (NAME is kept when it is `template`), and drops the
/// directive lines. NAME must be one of `names`; `file` is for errors.
pub fn select(text: &str, file: &str, template: &str, names: &[String]) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut open: Vec<Open> = Vec::new();
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let at = format!("{file}:{}", i + 1);
        match directive(line) {
            Some(Directive::If(name)) => {
                if !names.iter().any(|n| n == name) {
                    return Err(format!(
                        "{at}: `{IF} {name}}}}}` names no template (templates: {})",
                        names.join(", ")
                    ));
                }
                let keep = name == template;
                open.push(Open {
                    keep,
                    in_else: false,
                    line: i + 1,
                });
            }
            Some(Directive::Else) => match open.last_mut() {
                Some(section) if !section.in_else => {
                    section.keep = !section.keep;
                    section.in_else = true;
                }
                Some(_) => return Err(format!("{at}: a second `{ELSE}` in one section")),
                None => return Err(format!("{at}: `{ELSE}` outside a `{IF} NAME}}}}` section")),
            },
            Some(Directive::End) => {
                if open.pop().is_none() {
                    return Err(format!("{at}: `{END}` without a `{IF} NAME}}}}`"));
                }
            }
            None if [IF, ELSE, END].iter().any(|d| line.contains(d)) => {
                return Err(format!(
                    "{at}: `{IF} NAME}}}}`, `{ELSE}` and `{END}` must be alone on their line"
                ));
            }
            None => {
                if open.iter().all(|s| s.keep) {
                    out.push_str(line);
                }
            }
        }
    }
    match open.last() {
        Some(section) => Err(format!(
            "{file}:{}: `{IF} ...}}}}` is never closed by `{END}`",
            section.line
        )),
        None => Ok(out),
    }
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

    fn names() -> Vec<String> {
        vec!["grpc".to_owned(), "http".to_owned()]
    }

    #[test]
    fn sections_keep_the_lines_of_the_template_rendered() {
        let text = "a\n{{#if grpc}}\ng\n  {{#if http}}\nnever\n  {{/if}}\n{{else}}\nh\n{{/if}}\nz";
        assert_eq!(select(text, "f", "grpc", &names()).unwrap(), "a\ng\nz");
        assert_eq!(select(text, "f", "http", &names()).unwrap(), "a\nh\nz");
        let crlf = "{{#if http}}\r\nh\r\n{{/if}}\r\n";
        assert_eq!(select(crlf, "f", "http", &names()).unwrap(), "h\r\n");
        assert_eq!(
            select("{{ not a section }}\n", "f", "http", &names()).unwrap(),
            "{{ not a section }}\n"
        );
    }

    #[test]
    fn sections_refuse_mistakes() {
        for (text, says) in [
            (
                "x\n{{#if gprc}}\n{{/if}}\n",
                "f:2: `{{#if gprc}}` names no template (templates: grpc, http)",
            ),
            (
                "{{#if grpc}}\nx\n",
                "f:1: `{{#if ...}}` is never closed by `{{/if}}`",
            ),
            ("{{/if}}\n", "f:1: `{{/if}}` without"),
            ("{{else}}\n", "f:1: `{{else}}` outside"),
            (
                "{{#if grpc}}\n{{else}}\n{{else}}\n{{/if}}\n",
                "f:3: a second `{{else}}`",
            ),
            (
                "let x = 1; {{#if grpc}}\n",
                "f:1: `{{#if NAME}}`, `{{else}}` and `{{/if}}` must be alone",
            ),
        ] {
            let err = select(text, "f", "http", &names()).unwrap_err();
            assert!(err.starts_with(says), "{text:?}: {err}");
        }
    }

    #[test]
    fn renders_a_template_and_refuses_clashing_paths() {
        let vars = Vars::new("pay-gate", "truss = \"0.1\"".into());
        let mut template = Template {
            name: "http".to_owned(),
            names: names(),
            files: Files::from([
                (
                    "Cargo.toml.tmpl".to_owned(),
                    "{{#if http}}\n{{name}}\n{{/if}}\n".to_owned(),
                ),
                ("src/{{name_snake}}.rs".to_owned(), "{{Name}}\n".to_owned()),
            ]),
        };
        let out = render(&template, &vars).unwrap();
        assert_eq!(out["Cargo.toml"], "pay-gate\n");
        assert_eq!(out["src/pay_gate.rs"], "PayGate\n");
        template
            .files
            .insert("Cargo.toml".to_owned(), String::new());
        let err = render(&template, &vars).unwrap_err();
        assert!(
            err.contains("two template files render to `Cargo.toml`"),
            "{err}"
        );
    }
}
