//! `cargo truss`: scaffolds truss services.
//!
//! ```text
//! cargo truss new <name> [--grpc] [--db sqlite|postgres] [--templates <dir>] [--path <dir>]
//!                        [--truss-path <dir> | --truss-version <version>]
//! cargo truss templates <dir>
//! cargo truss add rpc [--proto <file>] [--impl <file>]
//! cargo truss openapi [--out <file>] [-p <package>]
//! ```
//!
//! Install with `cargo install --path cli`. The templates are a shared `base/` plus one
//! directory per template (`templates/README.md`); see the `layout` and `render` modules.

mod add_rpc;
mod layout;
mod names;
mod render;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use render::Db;

const USAGE: &str = "\
cargo truss: scaffold truss services

USAGE:
    cargo truss new <name> [--grpc] [--db sqlite|postgres] [--templates <dir>] [--path <dir>]
                           [--truss-path <dir> | --truss-version <version>]
        Creates ./<name> (or <dir>/<name>) from the `http` template, or the `grpc` one
        (HTTP + gRPC with a .proto) with --grpc. Items are stored in SQL, migrations
        included: --db sqlite (the default) in a SQLite file under data/, --db postgres
        in PostgreSQL at postgres://postgres@127.0.0.1:5432/<name_snake> (config.toml;
        the README says how to create the database). --templates renders from your own
        copy of the templates (see `templates`). The truss dependency is a path to the
        truss this tool was built from, unless --truss-path or --truss-version says
        otherwise.

    cargo truss templates <dir>
        Writes the built-in templates to <dir> for editing: base/ with the files they all
        start from, one directory per template with the files it adds or replaces, and a
        README.md on how they are merged and on {{#if <template or database>}} sections.

    cargo truss add rpc [--proto <file>] [--impl <file>]
        Adds a method skeleton to the #[truss::grpc] impl (default src/api.rs) for every
        unary rpc of the .proto (default: the only one under proto/) it does not have yet.
        Existing code is not touched.

    cargo truss openapi [--out <file>] [-p <package>]
        Writes the service's OpenAPI 3.1 document (default openapi.json) without starting
        it: builds and runs the binary with `--openapi <file>` (`cargo run`), so the
        document is exactly what GET /openapi.json serves.
";

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo truss ...` runs `cargo-truss truss ...`.
    if args.first().map(String::as_str) == Some("truss") {
        args.remove(0);
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<(), String> {
    match args.first().map(String::as_str) {
        Some("new") => new(&args[1..]),
        Some("templates") => templates(&args[1..]),
        Some("add") if args.get(1).map(String::as_str) == Some("rpc") => add_rpc(&args[2..]),
        Some("openapi") => openapi(&args[1..]),
        Some("help" | "--help" | "-h") | None => {
            print!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command `{other}`\n\n{USAGE}")),
    }
}

/// Splits `--flag value` options from positional arguments.
struct Parsed {
    positional: Vec<String>,
    options: Vec<(String, Option<String>)>,
}

fn parse(args: &[String], flags: &[&str], valued: &[&str]) -> Result<Parsed, String> {
    let mut parsed = Parsed {
        positional: Vec::new(),
        options: Vec::new(),
    };
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if let Some((key, value)) = arg.split_once('=').filter(|(k, _)| k.starts_with("--")) {
            if !valued.contains(&key) {
                return Err(format!("unknown option `{key}`"));
            }
            parsed
                .options
                .push((key.to_owned(), Some(value.to_owned())));
        } else if flags.contains(&arg.as_str()) {
            parsed.options.push((arg.clone(), None));
        } else if valued.contains(&arg.as_str()) {
            let value = iter
                .next()
                .ok_or_else(|| format!("`{arg}` needs a value"))?;
            parsed.options.push((arg.clone(), Some(value.clone())));
        } else if arg.starts_with('-') {
            return Err(format!("unknown option `{arg}`\n\n{USAGE}"));
        } else {
            parsed.positional.push(arg.clone());
        }
    }
    Ok(parsed)
}

impl Parsed {
    fn flag(&self, name: &str) -> bool {
        self.options.iter().any(|(k, _)| k == name)
    }

    fn value(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
    }
}

fn new(args: &[String]) -> Result<(), String> {
    let p = parse(
        args,
        &["--grpc"],
        &[
            "--templates",
            "--path",
            "--truss-path",
            "--truss-version",
            "--template",
            "--db",
        ],
    )?;
    let [name] = p.positional.as_slice() else {
        return Err(format!("`new` takes exactly one service name\n\n{USAGE}"));
    };
    names::check(name)?;
    let template = match (p.flag("--grpc"), p.value("--template")) {
        (true, Some(_)) => return Err("use --grpc or --template, not both".to_owned()),
        (true, None) => "grpc",
        (false, Some(t)) => t,
        (false, None) => "http",
    };
    let files = match p.value("--templates") {
        Some(dir) => layout::from_dir(Path::new(dir), template)?,
        None => layout::built_in(template).ok_or_else(|| {
            format!(
                "template `{template}` not found: the built-in templates are {}",
                layout::built_in_names().join(", ")
            )
        })?,
    };
    let db = p.value("--db").map_or(Ok(Db::default()), Db::parse)?;
    let truss_dep = truss_dependency(p.value("--truss-path"), p.value("--truss-version"))?;
    let rendered = render::render(&files, &render::Vars::new(name, truss_dep), db)?;
    let parent = PathBuf::from(p.value("--path").unwrap_or("."));
    let target = parent.join(name);
    render::write_new_dir(&target, &rendered)?;
    println!(
        "created {} from the `{template}` template, on {}",
        target.display(),
        match db {
            Db::Sqlite => "SQLite (data/)",
            Db::Postgres => "PostgreSQL",
        }
    );
    println!("next:\n    cd {}", target.display());
    if db == Db::Postgres {
        println!(
            "    createdb -h 127.0.0.1 -U postgres {}    # once; see README.md",
            names::snake(name)
        );
    }
    println!("    cargo run");
    Ok(())
}

/// The truss features a new project is built with: `sql` for its repository.
const FEATURES: &str = r#"["sql"]"#;

/// `{{truss_dep}}`: the `truss = { ..., features = ["sql"] }` dependency line.
fn truss_dependency(path: Option<&str>, version: Option<&str>) -> Result<String, String> {
    match (path, version) {
        (Some(_), Some(_)) => Err("use --truss-path or --truss-version, not both".to_owned()),
        (Some(path), None) => {
            let dir =
                std::fs::canonicalize(path).map_err(|e| format!("--truss-path {path}: {e}"))?;
            if !dir.join("Cargo.toml").is_file() {
                return Err(format!("--truss-path {path}: no Cargo.toml there"));
            }
            Ok(format!(
                "truss = {{ path = {:?}, features = {FEATURES} }}",
                dir.display().to_string()
            ))
        }
        (None, Some(version)) => Ok(format!(
            "truss = {{ version = {version:?}, features = {FEATURES} }}"
        )),
        (None, None) => {
            // The truss this tool was built with, when it is still there.
            let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("../framework");
            match std::fs::canonicalize(&here) {
                Ok(dir) if dir.join("Cargo.toml").is_file() => Ok(format!(
                    "truss = {{ path = {:?}, features = {FEATURES} }}",
                    dir.display().to_string()
                )),
                _ => Ok(format!(
                    "truss = {{ version = {:?}, features = {FEATURES} }}",
                    env!("CARGO_PKG_VERSION")
                )),
            }
        }
    }
}

fn templates(args: &[String]) -> Result<(), String> {
    let p = parse(args, &[], &[])?;
    let [dir] = p.positional.as_slice() else {
        return Err(format!("`templates` takes one directory\n\n{USAGE}"));
    };
    render::write_new_dir(Path::new(dir), &layout::built_in_tree())?;
    println!(
        "wrote the {} templates and their shared {} to {dir} ({dir}/README.md explains the layout); \
         use them with `cargo truss new <name> --templates {dir}`",
        layout::built_in_names().join(" and "),
        layout::BASE
    );
    Ok(())
}

fn add_rpc(args: &[String]) -> Result<(), String> {
    let p = parse(args, &[], &["--proto", "--impl"])?;
    if !p.positional.is_empty() {
        return Err(format!("unexpected argument `{}`", p.positional[0]));
    }
    let proto = match p.value("--proto") {
        Some(path) => PathBuf::from(path),
        None => only_proto(Path::new("proto"))?,
    };
    let source = PathBuf::from(p.value("--impl").unwrap_or("src/api.rs"));
    let done = add_rpc::add_rpc(&proto, &source)?;
    for s in &done.skipped {
        eprintln!("skipped {s}");
    }
    if done.added.is_empty() {
        println!("nothing to add: {} already has every rpc", source.display());
    } else {
        for a in &done.added {
            println!("added {a} to {}", source.display());
        }
    }
    Ok(())
}

/// `cargo run [-p <package>] -- --openapi <file>`: the binary writes its document and exits.
fn openapi(args: &[String]) -> Result<(), String> {
    let p = parse(args, &[], &["--out", "-p", "--package"])?;
    if !p.positional.is_empty() {
        return Err(format!("unexpected argument `{}`", p.positional[0]));
    }
    let out = std::path::absolute(p.value("--out").unwrap_or("openapi.json"))
        .map_err(|e| format!("cannot resolve the output path: {e}"))?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = std::process::Command::new(cargo);
    command.args(["run", "--quiet"]);
    if let Some(package) = p.value("-p").or(p.value("--package")) {
        command.args(["-p", package]);
    }
    command.arg("--").arg("--openapi").arg(&out);
    let status = command
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("`cargo run -- --openapi` failed ({status})"));
    }
    if !out.is_file() {
        return Err(format!(
            "the binary did not write {}: is it a truss service that calls AppBuilder::run?",
            out.display()
        ));
    }
    Ok(())
}

fn only_proto(dir: &Path) -> Result<PathBuf, String> {
    let protos: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| {
            format!(
                "cannot read {}: {e} (give the file with --proto)",
                dir.display()
            )
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "proto"))
        .collect();
    match protos.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(format!(
            "no .proto in {} (give one with --proto)",
            dir.display()
        )),
        _ => Err(format!(
            "several .proto files in {}: choose one with --proto",
            dir.display()
        )),
    }
}
