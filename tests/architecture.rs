//! Keeps the dependency direction of docs/architecture.md true: bus ← HTTP
//! glue ← transports ← server, engines beside the bus, no transport
//! depending on another, and the test kit only ever a dev-dependency.
//!
//! Every dependency section counts — `[dependencies]`,
//! `[dev-dependencies]`, `[build-dependencies]` and their
//! `[target.'cfg(..)'.*]` forms — of every crate and of the root package,
//! and a dependency renamed with `package = "..."` counts under its real
//! name. Reads the manifests; needs no server.

use std::{collections::BTreeSet, fs, path::Path};

const TRANSPORTS: &[&str] = &["herald-poll", "herald-longpoll", "herald-sse", "herald-ws"];

/// The kind of a dependency section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Normal,
    Dev,
    Build,
}

/// One manifest: its package name and the herald crates it names, with the
/// kind of section each was found in.
struct Manifest {
    name: String,
    deps: BTreeSet<(Kind, String)>,
}

impl Manifest {
    fn parse(text: &str) -> Manifest {
        let doc: toml::Table = toml::from_str(text).unwrap();
        let name = doc["package"]["name"].as_str().unwrap().to_string();
        let mut deps = BTreeSet::new();
        let mut read = |table: &toml::Table| {
            for (section, kind) in [
                ("dependencies", Kind::Normal),
                ("dev-dependencies", Kind::Dev),
                ("build-dependencies", Kind::Build),
            ] {
                let Some(section) = table.get(section).and_then(|s| s.as_table()) else {
                    continue;
                };
                for (key, spec) in section {
                    // `alias = { package = "herald-x", .. }` is herald-x.
                    let real = spec.get("package").and_then(|p| p.as_str()).unwrap_or(key);
                    if real.starts_with("herald") {
                        deps.insert((kind, real.to_string()));
                    }
                }
            }
        };
        read(&doc);
        if let Some(targets) = doc.get("target").and_then(|t| t.as_table()) {
            for target in targets.values().filter_map(|t| t.as_table()) {
                read(target);
            }
        }
        Manifest { name, deps }
    }

    /// Every dependency that breaks the architecture, as a sentence.
    fn violations(&self) -> Vec<String> {
        let name = self.name.as_str();
        // What each package may depend on, in any section. The test kit
        // is never a normal or build dependency; it is a dev-dependency
        // only of packages that sit above the server.
        let (allowed, kit): (&[&str], bool) = match name {
            "herald-bus" => (&[], false),
            // Authorization decides from credentials and channel names
            // only: no HTTP glue, no transport, no server.
            "herald-auth" => (&["herald-bus"], false),
            "herald-http" => (&["herald-bus", "herald-auth"], false),
            "herald-redis" => (&["herald-bus"], false),
            n if TRANSPORTS.contains(&n) => (&["herald-bus", "herald-http", "herald-auth"], false),
            // The server mounts everything but the kit and the bench; the
            // kit drives the server; the bench drives servers from outside
            // and may use nothing but the bus's types; the root package is
            // the facade and binary over the server.
            "herald-server" => (
                &["herald-bus", "herald-auth", "herald-http", "herald-redis"],
                true,
            ),
            "herald-testkit" => (&["herald-bus", "herald-redis", "herald-server"], false),
            "herald-bench" => (&["herald-bus"], true),
            // The doctor checks a deployment from outside, over HTTP only.
            "herald-doctor" => (&[], false),
            "herald" => (
                &[
                    "herald-bus",
                    "herald-server",
                    "herald-bench",
                    "herald-doctor",
                ],
                true,
            ),
            other => {
                return vec![format!(
                    "{other}: a new crate needs its place in docs/architecture.md and here"
                )];
            }
        };
        let mut out = Vec::new();
        for (kind, dep) in &self.deps {
            // A crate may name itself as a dev-dependency to turn on a
            // feature for its own tests (the bus's contract suite).
            let ok = if dep == name {
                *kind == Kind::Dev
            } else if dep == "herald-testkit" {
                kit && *kind == Kind::Dev
            } else if TRANSPORTS.contains(&dep.as_str()) {
                // Only the server (and the packages above it) mount
                // transports; a transport never reaches another.
                matches!(name, "herald-server" | "herald-testkit" | "herald")
            } else {
                allowed.contains(&dep.as_str())
            };
            if !ok {
                out.push(format!("{name} must not depend on {dep} ({kind:?})"));
            }
        }
        out
    }
}

/// The root package and every crate under crates/.
fn manifests() -> Vec<Manifest> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths = vec![root.join("Cargo.toml")];
    for entry in fs::read_dir(root.join("crates")).unwrap() {
        let manifest = entry.unwrap().path().join("Cargo.toml");
        if manifest.is_file() {
            paths.push(manifest);
        }
    }
    paths
        .iter()
        .map(|p| Manifest::parse(&fs::read_to_string(p).unwrap()))
        .collect()
}

#[test]
fn dependencies_point_one_way() {
    let all = manifests();
    let names: Vec<&str> = all.iter().map(|m| m.name.as_str()).collect();
    for needed in ["herald", "herald-bus", "herald-server", "herald-testkit"] {
        assert!(names.contains(&needed), "{needed} not read: {names:?}");
    }
    let violations: Vec<String> = all.iter().flat_map(Manifest::violations).collect();
    assert!(violations.is_empty(), "{violations:#?}");
}

#[test]
fn the_check_reads_every_section_and_catches_a_transport_reaching_another() {
    let manifest = |sections: &str| {
        Manifest::parse(&format!(
            "[package]\nname = \"herald-sse\"\n\n[dependencies]\nherald-bus.workspace = true\n{sections}"
        ))
    };
    assert_eq!(manifest("").violations(), Vec::<String>::new());
    for sneaky in [
        "[dev-dependencies]\nherald-ws.workspace = true\n",
        "[build-dependencies]\nherald-ws = { path = \"../ws\" }\n",
        "[target.'cfg(unix)'.dev-dependencies]\nherald-ws.workspace = true\n",
        "[target.'cfg(unix)'.dependencies]\nherald-poll.workspace = true\n",
        "[dev-dependencies]\nws = { package = \"herald-ws\", path = \"../ws\" }\n",
        "[dev-dependencies]\nherald-testkit.workspace = true\n",
        "[dev-dependencies]\nherald-server.workspace = true\n",
    ] {
        assert_eq!(
            manifest(sneaky).violations().len(),
            1,
            "not caught: {sneaky}"
        );
    }
}

#[test]
fn the_test_kit_is_only_ever_a_dev_dependency() {
    let server = |section: &str| {
        Manifest::parse(&format!(
            "[package]\nname = \"herald-server\"\n\n[{section}]\nherald-testkit.workspace = true\n"
        ))
        .violations()
    };
    assert!(server("dev-dependencies").is_empty());
    assert_eq!(server("dependencies").len(), 1);
    assert_eq!(server("build-dependencies").len(), 1);
}
