//! Keeps the dependency direction of docs/architecture.md true: bus ← HTTP
//! glue ← transports ← server, engines beside the bus, and no transport
//! depending on another. Reads the crates' manifests; needs no server.

use std::{collections::BTreeMap, fs, path::Path};

const TRANSPORTS: &[&str] = &["herald-poll", "herald-longpoll", "herald-sse", "herald-ws"];

/// Package name → the herald crates it depends on (normal dependencies).
fn graph() -> BTreeMap<String, Vec<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates");
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(root).unwrap() {
        let manifest = entry.unwrap().path().join("Cargo.toml");
        let Ok(text) = fs::read_to_string(&manifest) else {
            continue;
        };
        let doc: toml::Table = toml::from_str(&text).unwrap();
        let name = doc["package"]["name"].as_str().unwrap().to_string();
        let deps = doc
            .get("dependencies")
            .and_then(|d| d.as_table())
            .map(|t| {
                t.keys()
                    .filter(|k| k.starts_with("herald"))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        out.insert(name, deps);
    }
    out
}

#[test]
fn dependencies_point_one_way() {
    let g = graph();
    assert!(
        g.contains_key("herald-bus") && g.contains_key("herald-server"),
        "{g:?}"
    );
    for (name, deps) in &g {
        let allowed: &[&str] = match name.as_str() {
            "herald-bus" => &[],
            "herald-http" => &["herald-bus"],
            "herald-redis" => &["herald-bus"],
            n if TRANSPORTS.contains(&n) => &["herald-bus", "herald-http"],
            // The server mounts everything; the bench drives servers from
            // outside and may use nothing but the bus's types.
            "herald-server" => continue,
            "herald-bench" => &["herald-bus"],
            other => {
                panic!("{other}: a new crate needs its place in docs/architecture.md and here")
            }
        };
        for d in deps {
            assert!(
                allowed.contains(&d.as_str()),
                "{name} must not depend on {d}"
            );
        }
    }
}
