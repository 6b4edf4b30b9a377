//! `gen-docs`: writes the Terraform Registry documentation (`docs/`) from the provider's schema.
//!
//! ```text
//! terraform providers schema -json | gen-docs [--out docs] [--templates templates] [--root .] [--provider NAME]
//! gen-docs --schema schema.json --out docs
//! ```
//!
//! It reads the JSON of `terraform providers schema -json` from `--schema FILE` (or standard input), renders
//! every `templates/**/*.md.tmpl` (see [`datavault_gen_docs`]) and writes the pages under
//! `--out`. Files already in `--out` that it does not generate are left alone: `scripts/gen-docs.sh` generates
//! into an empty directory and replaces `docs/` with it. Exits non-zero, listing every problem, when something
//! lacks a description, a template is wrong, or a resource has no template.

use std::fs;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use datavault_gen_docs::{Options, generate};

const USAGE: &str = "usage: gen-docs [--schema FILE|-] [--out DIR] [--templates DIR] [--root DIR] [--provider NAME]
  --schema FILE     JSON of `terraform providers schema -json` (default: standard input)
  --out DIR         where to write the pages (default: docs)
  --templates DIR   the *.md.tmpl templates (default: ROOT/templates)
  --root DIR        repository root that example paths are relative to (default: .)
  --provider NAME   the provider to document when the JSON holds several (address or name)";

struct Args {
    schema: Option<PathBuf>,
    out: PathBuf,
    templates: Option<PathBuf>,
    root: PathBuf,
    provider: Option<String>,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut args = Args { schema: None, out: "docs".into(), templates: None, root: ".".into(), provider: None };
    let mut argv = std::env::args().skip(1);
    while let Some(arg) = argv.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_string(), Some(value.to_string())),
            _ => (arg.clone(), None),
        };
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let value = match inline {
            Some(value) => value,
            None => argv.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?,
        };
        match flag.as_str() {
            "--schema" => args.schema = (value != "-").then(|| value.into()),
            "--out" => args.out = value.into(),
            "--templates" => args.templates = Some(value.into()),
            "--root" => args.root = value.into(),
            "--provider" => args.provider = Some(value),
            _ => return Err(format!("unknown argument {flag:?}\n{USAGE}")),
        }
    }
    Ok(Some(args))
}

fn run() -> Result<(), String> {
    let Some(args) = parse_args()? else {
        println!("{USAGE}");
        return Ok(());
    };
    let schema = match &args.schema {
        Some(path) => fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?,
        None => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).map_err(|e| format!("reading standard input: {e}"))?;
            text
        }
    };
    let options = Options {
        templates: args.templates.unwrap_or_else(|| args.root.join("templates")),
        root: args.root,
        provider: args.provider,
    };
    let pages = generate(&schema, &options).map_err(|e| {
        let problems: Vec<String> = e.0.iter().map(|p| format!("  - {p}")).collect();
        format!("the documentation cannot be generated:\n{}", problems.join("\n"))
    })?;
    for (relative, markdown) in &pages {
        let path = args.out.join(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
        }
        fs::write(&path, markdown).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    eprintln!("gen-docs: {} pages written to {}", pages.len(), args.out.display());
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("gen-docs: {message}");
            ExitCode::FAILURE
        }
    }
}
