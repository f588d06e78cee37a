//! The README's configuration table is exactly what the code renders
//! (`switchyard config-reference`): keys and defaults from `Config::default()`, env names from
//! the loader, descriptions from the fields' doc comments. `UPDATE_README=1` rewrites it.

use std::path::PathBuf;

const START: &str = "<!-- config-table:start -->";
const END: &str = "<!-- config-table:end -->";

#[test]
fn readme_config_table_matches_the_code() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&path).expect("README.md");
    let (Some(start), Some(end)) = (readme.find(START), readme.find(END)) else {
        panic!("README.md lacks the {START} / {END} markers");
    };
    assert!(start < end, "markers out of order");
    let table = switchyard::config::reference::markdown_table();
    let expected = format!(
        "{}{START}\n{table}{END}{}",
        &readme[..start],
        &readme[end + END.len()..]
    );
    if std::env::var("UPDATE_README").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &expected).expect("write README.md");
        return;
    }
    assert!(
        readme == expected,
        "README.md's config table is out of date: run \
         `UPDATE_README=1 cargo test --test config_reference` and commit README.md"
    );
}

#[test]
fn config_reference_subcommand_prints_the_same_table() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("config-reference")
        .output()
        .expect("run switchyard config-reference");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        switchyard::config::reference::markdown_table()
    );
}
