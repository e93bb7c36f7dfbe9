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

/// The database a new project is configured for (`--db`); its name is also a `{{#if NAME}}`
/// condition, which holds for the one chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Db {
    /// A SQLite file in the service's `data_dir`: nothing to install or run.
    #[default]
    Sqlite,
    /// A PostgreSQL server at `[database] url`.
    Postgres,
}

impl Db {
    /// Every choice, the default first.
    pub const ALL: [Db; 2] = [Db::Sqlite, Db::Postgres];

    /// `sqlite` or `postgres`: the `--db` value and the `{{#if NAME}}` condition.
    pub fn name(self) -> &'static str {
        match self {
            Db::Sqlite => "sqlite",
            Db::Postgres => "postgres",
        }
    }

    /// The `--db` value `value` (`postgresql` is taken for `postgres`).
    pub fn parse(value: &str) -> Result<Db, String> {
        match value {
            "sqlite" => Ok(Db::Sqlite),
            "postgres" | "postgresql" => Ok(Db::Postgres),
            other => Err(format!(
                "--db {other}: not a supported database; use {}",
                Db::ALL.map(Db::name).join(" or ")
            )),
        }
    }
}

/// What `{{#if NAME}}` sections test while rendering: NAME is a template of the set or a
/// database, and holds for the template rendered and the database chosen.
pub struct Conditions<'a> {
    /// The template rendered.
    pub template: &'a str,
    /// Every template of its set.
    pub templates: &'a [String],
    /// The database chosen.
    pub db: Db,
}

impl Conditions<'_> {
    fn known(&self, name: &str) -> bool {
        self.templates.iter().any(|t| t == name) || Db::ALL.iter().any(|d| d.name() == name)
    }

    fn holds(&self, name: &str) -> bool {
        name == self.template || name == self.db.name()
    }

    fn unknown(&self, name: &str) -> String {
        format!(
            "`{IF} {name}}}}}` names no template or database (templates: {}; databases: {})",
            self.templates.join(", "),
            Db::ALL.map(Db::name).join(", ")
        )
    }
}

/// Renders `template`'s paths and contents for database `db`: sections, placeholders, and
/// `Cargo.toml.tmpl` → `Cargo.toml`.
pub fn render(template: &Template, vars: &Vars, db: Db) -> Result<Files, String> {
    if let Some(clash) = Db::ALL
        .iter()
        .find(|d| template.names.iter().any(|n| n == d.name()))
    {
        return Err(format!(
            "a template named `{0}` is ambiguous in `{IF} {0}}}}}`, which tests the database: rename it",
            clash.name()
        ));
    }
    let when = Conditions {
        template: &template.name,
        templates: &template.names,
        db,
    };
    let mut out = Files::new();
    for (path, text) in &template.files {
        let path = vars.apply(path, path)?;
        let path = path.strip_suffix(".tmpl").unwrap_or(&path).to_owned();
        if path.split('/').any(|p| p == ".." || p.is_empty()) {
            return Err(format!(
                "template path `{path}` leaves the project directory"
            ));
        }
        let text = select(text, &path, &when)?;
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
/// (NAME is kept when it holds in `when`: the template rendered or the database chosen), and
/// drops the directive lines. NAME must be known to `when`; `file` is for errors.
pub fn select(text: &str, file: &str, when: &Conditions<'_>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut open: Vec<Open> = Vec::new();
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let at = format!("{file}:{}", i + 1);
        match directive(line) {
            Some(Directive::If(name)) => {
                if !when.known(name) {
                    return Err(format!("{at}: {}", when.unknown(name)));
                }
                let keep = when.holds(name);
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

    /// `select` for `template` on `db`.
    fn pick(text: &str, template: &str, db: Db) -> Result<String, String> {
        let templates = names();
        let when = Conditions {
            template,
            templates: &templates,
            db,
        };
        select(text, "f", &when)
    }

    #[test]
    fn sections_keep_the_lines_of_the_template_rendered() {
        let text = "a\n{{#if grpc}}\ng\n  {{#if http}}\nnever\n  {{/if}}\n{{else}}\nh\n{{/if}}\nz";
        assert_eq!(pick(text, "grpc", Db::Sqlite).unwrap(), "a\ng\nz");
        assert_eq!(pick(text, "http", Db::Sqlite).unwrap(), "a\nh\nz");
        let crlf = "{{#if http}}\r\nh\r\n{{/if}}\r\n";
        assert_eq!(pick(crlf, "http", Db::Sqlite).unwrap(), "h\r\n");
        assert_eq!(
            pick("{{ not a section }}\n", "http", Db::Sqlite).unwrap(),
            "{{ not a section }}\n"
        );
    }

    #[test]
    fn sections_test_the_database_chosen() {
        let text = "{{#if postgres}}\npg\n{{else}}\n{{#if grpc}}\ng\n{{/if}}\nsqlite\n{{/if}}\n";
        assert_eq!(pick(text, "http", Db::Postgres).unwrap(), "pg\n");
        assert_eq!(pick(text, "http", Db::Sqlite).unwrap(), "sqlite\n");
        assert_eq!(pick(text, "grpc", Db::Sqlite).unwrap(), "g\nsqlite\n");
        let sqlite = "{{#if sqlite}}\nfile\n{{/if}}\n";
        assert_eq!(pick(sqlite, "grpc", Db::Sqlite).unwrap(), "file\n");
        assert_eq!(pick(sqlite, "grpc", Db::Postgres).unwrap(), "");
    }

    #[test]
    fn db_values() {
        assert_eq!(Db::parse("sqlite"), Ok(Db::Sqlite));
        assert_eq!(Db::parse("postgres"), Ok(Db::Postgres));
        assert_eq!(Db::parse("postgresql"), Ok(Db::Postgres));
        let err = Db::parse("mysql").unwrap_err();
        assert_eq!(
            err,
            "--db mysql: not a supported database; use sqlite or postgres"
        );
        assert_eq!(Db::default(), Db::Sqlite);
    }

    #[test]
    fn sections_refuse_mistakes() {
        for (text, says) in [
            (
                "x\n{{#if gprc}}\n{{/if}}\n",
                "f:2: `{{#if gprc}}` names no template or database (templates: grpc, http; databases: sqlite, postgres)",
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
            let err = pick(text, "http", Db::Sqlite).unwrap_err();
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
        let out = render(&template, &vars, Db::Sqlite).unwrap();
        assert_eq!(out["Cargo.toml"], "pay-gate\n");
        assert_eq!(out["src/pay_gate.rs"], "PayGate\n");
        template
            .files
            .insert("Cargo.toml".to_owned(), String::new());
        let err = render(&template, &vars, Db::Sqlite).unwrap_err();
        assert!(
            err.contains("two template files render to `Cargo.toml`"),
            "{err}"
        );

        // A template named like a database would make `{{#if postgres}}` ambiguous.
        template.files.remove("Cargo.toml");
        template.names.push("postgres".to_owned());
        let err = render(&template, &vars, Db::Sqlite).unwrap_err();
        assert!(err.contains("a template named `postgres`"), "{err}");
    }
}
