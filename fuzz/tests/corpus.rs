//! Runs every committed seed, and every saved crash input, through its
//! target under a plain `cargo test`: the smoke check that needs no fuzzing
//! toolchain. A seed that panics here is a bug found (or a seed gone stale).

use std::{fs, path::Path};

type Target = fn(&[u8]);

const TARGETS: &[(&str, Target)] = &[
    ("cursor", herald_fuzz::cursor),
    ("since", herald_fuzz::since),
    ("last_event_id", herald_fuzz::last_event_id),
    ("batch", herald_fuzz::batch),
    ("ws_frame", herald_fuzz::ws_frame),
    ("ws_socket", herald_fuzz::ws_socket),
    ("http_head", herald_fuzz::http_head),
];

#[test]
fn every_seed_runs_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (name, target) in TARGETS {
        let dir = root.join("corpus").join(name);
        let mut seeds = 0;
        for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("a directory entry").path();
            let data = fs::read(&path).expect("a seed file");
            eprintln!("{name}: {}", path.display());
            target(&data);
            seeds += 1;
        }
        assert!(seeds > 0, "{name} has no seeds in {}", dir.display());
    }
}
