//! The token-minting examples of docs/security.md produce tokens herald
//! accepts: the Python and Node ones are run as written (with PyJWT and the
//! npm `jsonwebtoken` package), the Rust one is compiled here and checked to
//! be the one the document shows.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use herald_auth::{Authorizer, Config, Credentials, Decision};
use herald_bus::ChannelName;

const SECRET: &str = "docs-example-secret-that-is-32-bytes-or-more";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The body of the first fenced block of `lang` in docs/security.md.
fn example(lang: &str) -> String {
    let doc = std::fs::read_to_string(root().join("docs/security.md")).unwrap();
    let fence = format!("```{lang}\n");
    let start = doc
        .find(&fence)
        .unwrap_or_else(|| panic!("no {lang} example"))
        + fence.len();
    let len = doc[start..].find("```").unwrap();
    doc[start..start + len].to_owned()
}

/// Whether a missing outside program must fail the test (CI) rather than
/// skip it.
fn required() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

fn skip(why: &str) {
    assert!(!required(), "{why} (required when CI is set)");
    eprintln!("SKIPPED: {why}");
}

/// Checks that `token` is accepted for the example's channels and no others.
async fn accepted(token: &str) {
    let auth = Authorizer::new(Config {
        jwt_secret: Some(SECRET.into()),
        ..Config::default()
    })
    .unwrap();
    let creds = Credentials::token_only(token.trim());
    let channels: Vec<ChannelName> = ["user.42.inbox", "news"]
        .iter()
        .map(|c| ChannelName::new(c).unwrap())
        .collect();
    let d = auth.authorize(&creds, &channels, "sse").await;
    let grant = d.allowed().unwrap_or_else(|| panic!("{d:?}"));
    assert_eq!(grant.sub.as_deref(), Some("user-42"));
    assert!(grant.expires_at.is_some());
    let other = [ChannelName::new("user.43.inbox").unwrap()];
    let d = auth.authorize(&creds, &other, "sse").await;
    assert!(matches!(d, Decision::Forbidden { .. }), "{d:?}");
}

fn run(mut command: Command) -> String {
    let out = command
        .env("HERALD_AUTH_JWT_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn the_python_example_mints_an_accepted_token() {
    let python = ["python3", "/usr/bin/python3", "python"]
        .into_iter()
        .find(|p| {
            Command::new(p)
                .args(["-c", "import jwt"])
                .output()
                .is_ok_and(|o| o.status.success())
        });
    let Some(python) = python else {
        return skip("no python3 with PyJWT (`import jwt`) found");
    };
    let mut command = Command::new(python);
    command.args(["-c", &example("python")]);
    accepted(&run(command)).await;
}

#[tokio::test]
async fn the_node_example_mints_an_accepted_token() {
    let js = root().join("tests/js");
    if !js.join("node_modules/jsonwebtoken").is_dir() {
        return skip(
            "tests/js/node_modules/jsonwebtoken is missing; run `npm ci --prefix tests/js`",
        );
    }
    let mut command = Command::new("node");
    command
        .current_dir(js)
        .args(["--input-type=module", "-e", &example("js")]);
    accepted(&run(command)).await;
}

// The Rust example, compiled: the lines between the markers must be the
// document's Rust example.
fn rust_example(secret: &[u8]) -> Result<String, Box<dyn std::error::Error>> {
    // example:start
    use jsonwebtoken::{EncodingKey, Header, encode};
    use std::time::{SystemTime, UNIX_EPOCH};

    // `secret`: the bytes herald is given in HERALD_AUTH_JWT_SECRET.
    let exp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() + 300;
    let claims = serde_json::json!({
        "sub": "user-42",
        "channels": ["user.42.*", "news"],
        "exp": exp,
    });
    let key = EncodingKey::from_secret(secret);
    let token = encode(&Header::default(), &claims, &key)?;
    // example:end
    Ok(token)
}

#[tokio::test]
async fn the_rust_example_is_the_documented_one_and_mints_an_accepted_token() {
    let this = include_str!("minting.rs");
    let start = this.find("// example:start\n").unwrap() + "// example:start\n".len();
    let end = this.find("    // example:end").unwrap();
    let here: Vec<&str> = this[start..end].lines().map(str::trim).collect();
    let doc = example("rust");
    let there: Vec<&str> = doc.lines().map(str::trim).collect();
    assert_eq!(here, there, "docs/security.md's Rust example drifted");

    accepted(&rust_example(SECRET.as_bytes()).unwrap()).await;
}
