//! The Rust version the project claims agrees with what its locked dependencies need:
//! `Cargo.toml`'s `rust-version` and the Dockerfile's `ARG RUST_VERSION` (the `rust:` image
//! the build stage uses) must each be at least the highest `rust_version` of any package in
//! `Cargo.lock`, as `cargo metadata --locked` reports it. A dependency update that raises the
//! minimum fails here, naming the crate, instead of in a user's `docker compose build`.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// "1.94.1" -> [1, 94, 1]; missing parts are 0 ("1.95" -> [1, 95, 0]).
fn parse_version(text: &str) -> Vec<u64> {
    let mut parts: Vec<u64> = text
        .trim()
        .split('.')
        .map(|p| {
            p.parse()
                .unwrap_or_else(|_| panic!("not a Rust version: {text:?}"))
        })
        .collect();
    assert!(
        !parts.is_empty() && parts.len() <= 3,
        "not a Rust version: {text:?}"
    );
    parts.resize(3, 0);
    parts
}

/// The locked packages needing the highest Rust version: (version, ["name version", ...]).
fn highest_locked_requirement() -> (String, Vec<String>) {
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cargo} metadata: {e}"));
    assert!(
        out.status.success(),
        "cargo metadata --locked failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metadata: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata JSON");
    let members: Vec<&str> = metadata["workspace_members"]
        .as_array()
        .expect("workspace_members")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mut best: Option<(Vec<u64>, String, Vec<String>)> = None;
    for package in metadata["packages"].as_array().expect("packages") {
        if members.contains(&package["id"].as_str().unwrap_or_default()) {
            continue;
        }
        let Some(needs) = package["rust_version"].as_str() else {
            continue;
        };
        let parsed = parse_version(needs);
        let crate_name = format!(
            "{} {}",
            package["name"].as_str().unwrap_or("?"),
            package["version"].as_str().unwrap_or("?")
        );
        match &mut best {
            Some((top, _, crates)) if *top == parsed => crates.push(crate_name),
            Some((top, _, _)) if *top > parsed => {}
            _ => best = Some((parsed, needs.to_string(), vec![crate_name])),
        }
    }
    let (_, version, mut crates) = best.expect("no locked package declares a rust_version");
    crates.sort();
    (version, crates)
}

/// `rust-version = "..."` under `[package]` in Cargo.toml.
fn cargo_toml_rust_version() -> String {
    let text = std::fs::read_to_string(root().join("Cargo.toml")).expect("read Cargo.toml");
    text.lines()
        .find_map(|line| {
            let (key, value) = line.split_once('=')?;
            (key.trim() == "rust-version").then(|| value.trim().trim_matches('"').to_string())
        })
        .expect("Cargo.toml has no rust-version")
}

/// The default of `ARG RUST_VERSION=...` in the Dockerfile.
fn dockerfile_rust_version() -> String {
    let text = std::fs::read_to_string(root().join("Dockerfile")).expect("read Dockerfile");
    text.lines()
        .find_map(|line| line.trim().strip_prefix("ARG RUST_VERSION="))
        .map(|v| v.trim().trim_matches('"').to_string())
        .expect("the Dockerfile has no `ARG RUST_VERSION=...` line")
}

fn assert_at_least(what: &str, declared: &str) {
    let (needed, crates) = highest_locked_requirement();
    let shown = match crates.len() {
        1 => crates[0].clone(),
        n => format!(
            "{} (and {} more: {})",
            crates[0],
            n - 1,
            crates[1..].join(", ")
        ),
    };
    assert!(
        parse_version(declared) >= parse_version(&needed),
        "{what} is {declared}, but the locked crate {shown} needs rustc {needed}: \
         raise {what} to at least {needed}"
    );
}

#[test]
fn cargo_toml_rust_version_covers_the_locked_dependencies() {
    assert_at_least("Cargo.toml's rust-version", &cargo_toml_rust_version());
}

#[test]
fn dockerfile_rust_version_covers_the_locked_dependencies() {
    assert_at_least(
        "the Dockerfile's ARG RUST_VERSION",
        &dockerfile_rust_version(),
    );
}

#[test]
fn versions_compare_by_component() {
    assert!(parse_version("1.95") > parse_version("1.94.1"));
    assert!(parse_version("1.94.1") > parse_version("1.94"));
    assert!(parse_version("1.100") > parse_version("1.99.9"));
    assert_eq!(parse_version("1.89"), parse_version("1.89.0"));
}
