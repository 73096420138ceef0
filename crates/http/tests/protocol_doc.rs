//! docs/protocol.md's table of error codes and [`Code`] say the same: every
//! code with its status, in both directions.

use std::collections::BTreeSet;

use herald_http::Code;

/// `(status, code)` of every row of the first table under `## Errors`.
fn documented() -> BTreeSet<(u16, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/protocol.md");
    let doc = std::fs::read_to_string(path).expect("docs/protocol.md");
    let section = doc
        .split("\n## Errors\n")
        .nth(1)
        .expect("an Errors section")
        .split("\n## ")
        .next()
        .unwrap_or_default();
    let rows: Vec<&str> = section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .collect();
    assert!(!rows.is_empty(), "no error table under ## Errors");
    rows.iter()
        .map(|row| {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let status = cells[1]
                .parse()
                .unwrap_or_else(|_| panic!("status in {row}"));
            let code = cells[2].trim_matches('`').to_string();
            (status, code)
        })
        .collect()
}

#[test]
fn the_protocol_table_lists_every_code_with_its_status() {
    let declared: BTreeSet<(u16, String)> = Code::ALL
        .iter()
        .map(|c| (c.status().as_u16(), c.as_str().to_string()))
        .collect();
    let documented = documented();
    let undocumented: Vec<_> = declared.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&declared).collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "missing from docs/protocol.md: {undocumented:?}; documented but not in Code: {unknown:?}"
    );
}
