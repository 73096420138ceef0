//! The option tables of docs/configuration.md, rendered from the option
//! declarations and compared with the file, so that the docs can never
//! list an option, an environment variable or a default that the binary
//! does not have.
//!
//! The tables sit between two HTML comments in the file; the prose around
//! them is the docs' own. `UPDATE_DOCS=1 cargo test -p herald-server
//! option_tables` rewrites the tables in place.

use super::{
    Config,
    options::{self, SECTIONS},
};

const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md");
const BEGIN: &str = "<!-- option tables: generated from crates/server/src/config/options.rs; \
                     rewrite with UPDATE_DOCS=1 cargo test -p herald-server option_tables -->\n";
const END: &str = "<!-- end of option tables -->\n";

/// Every section as a `##` heading and a table, one row per option.
fn tables() -> String {
    let defaults = Config::default();
    let mut out = String::new();
    for section in SECTIONS {
        out.push_str(&format!("\n## {}\n\n", section.title));
        out.push_str("| flag / TOML key | environment | default | meaning |\n");
        out.push_str("| --- | --- | --- | --- |\n");
        for opt in section.options {
            out.push_str(&format!(
                "| `--{}` | `{}` | `{}` | {} |\n",
                opt.name,
                opt.env(),
                opt.default_text(&defaults),
                opt.help.replace('|', "\\|"),
            ));
        }
    }
    out.push('\n');
    out
}

#[test]
fn option_tables_match_the_declarations() {
    let doc = std::fs::read_to_string(DOC).unwrap();
    let (Some(start), Some(end)) = (doc.find(BEGIN), doc.find(END)) else {
        panic!("docs/configuration.md lacks the markers {BEGIN:?} and {END:?}");
    };
    let start = start + BEGIN.len();
    let expected = tables();
    if doc[start..end] == expected {
        return;
    }
    if std::env::var_os("UPDATE_DOCS").is_some() {
        let updated = format!("{}{expected}{}", &doc[..start], &doc[end..]);
        std::fs::write(DOC, updated).unwrap();
        return;
    }
    panic!(
        "docs/configuration.md's option tables differ from the declarations; \
         run `UPDATE_DOCS=1 cargo test -p herald-server option_tables` to rewrite them. \
         Expected:\n{expected}"
    );
}

#[test]
fn no_option_row_outside_the_generated_tables() {
    let doc = std::fs::read_to_string(DOC).unwrap();
    let rows = doc.lines().filter(|l| l.starts_with("| `--")).count();
    assert_eq!(rows, options::all().count());
}

/// Other docs that list options in a table (docs/scaling.md) name real
/// options with their real environment variable and default.
#[test]
fn option_rows_in_other_docs_agree() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs");
    let defaults = Config::default();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "md") || path.ends_with("configuration.md") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for row in text.lines().filter(|l| l.starts_with("| `--")) {
            let name = row["| `--".len()..].split('`').next().unwrap();
            let opt = options::find(name)
                .unwrap_or_else(|| panic!("{}: no option --{name}", path.display()));
            for cell in [opt.env(), opt.default_text(&defaults)] {
                assert!(
                    row.contains(&format!("`{cell}`")),
                    "{}: the row of --{name} lacks `{cell}`",
                    path.display()
                );
            }
        }
    }
}
