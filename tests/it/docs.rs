//! The documentation's one source, `docs/*.tsv`, against the code and the
//! README: scripts/docs.py writes the README's tables and the man pages from
//! those files, and these tests fail when the README was not regenerated or
//! a setting is missing from the source.

use std::collections::BTreeSet;
use std::path::Path;

fn read(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// The rows of a TSV file under docs/: comment and empty lines left out.
fn rows(path: &str) -> Vec<Vec<String>> {
    read(path)
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| line.split('\t').map(str::to_string).collect())
        .collect()
}

/// The lines between the README's markers for `name`, markers excluded.
fn readme_block(readme: &str, name: &str) -> String {
    let begin = format!("<!-- {name}: generated from docs/{name}.tsv by scripts/docs.py; edit that file -->\n");
    let end = format!("<!-- end {name} -->");
    let start = readme
        .find(&begin)
        .unwrap_or_else(|| panic!("README.md: no {begin:?} marker"))
        + begin.len();
    let len = readme[start..]
        .find(&end)
        .unwrap_or_else(|| panic!("README.md: no {end:?} marker"));
    readme[start..start + len].to_string()
}

/// The Markdown table scripts/docs.py writes (`readme_blocks` there).
fn table(header: &[&str], rows: &[Vec<String>], code_first: bool) -> String {
    let mut out = format!("| {} |\n|{}\n", header.join(" | "), "---|".repeat(header.len()));
    for row in rows {
        let mut cells = row.clone();
        if code_first {
            cells[0] = format!("`{}`", cells[0]);
        }
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out
}

#[test]
fn settings_source_lists_exactly_the_settings_cronlock_reads() {
    let documented: BTreeSet<String> = rows("docs/settings.tsv")
        .iter()
        .map(|row| {
            assert_eq!(
                row.len(),
                3,
                "docs/settings.tsv: want name, default, description: {row:?}"
            );
            row[0].clone()
        })
        .collect();
    let known: BTreeSet<String> = cronlock::config::KNOWN
        .iter()
        .map(|name| format!("CRONLOCK_{name}"))
        .collect();
    let missing: Vec<_> = known.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&known).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "docs/settings.tsv: add {missing:?}, remove {extra:?} (then run scripts/docs.py)"
    );
}

#[test]
fn readme_settings_table_is_generated_from_the_source() {
    let wanted = table(&["Variable", "Default", "Meaning"], &rows("docs/settings.tsv"), true);
    assert!(
        readme_block(&read("README.md"), "settings") == wanted,
        "README.md's settings table is out of date with docs/settings.tsv: run scripts/docs.py"
    );
}

#[test]
fn readme_exit_code_table_is_generated_from_the_source() {
    let wanted = table(&["Code", "Meaning"], &rows("docs/exit-codes.tsv"), false);
    assert!(
        readme_block(&read("README.md"), "exit-codes") == wanted,
        "README.md's exit code table is out of date with docs/exit-codes.tsv: run scripts/docs.py"
    );
}
