//! A throwaway nginx in front of herald: a site file (deploy/nginx's
//! herald.conf or a variant of it) with only its addresses substituted,
//! run in its own prefix directory and stopped on drop.
//!
//! What it leaves out: the site itself. The test chooses it (the shipped
//! file, or one broken on purpose), so that what is proven is the file an
//! operator installs. HAProxy, Caddy and nginx's TLS and pair variants are
//! tests/proxies.rs's business.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{free_port, need};

/// The shipped site, deploy/nginx/herald.conf.
pub const SHIPPED: &str = include_str!("../../../deploy/nginx/herald.conf");

/// A main configuration for a throwaway nginx in the prefix directory
/// `dir`: one worker in the foreground, every temporary path and the pid
/// file inside `dir`, no access log, and the site file `site` (in `dir`)
/// included in its `http` block.
pub fn main_conf(dir: &Path, site: &str) -> String {
    let d = dir.display();
    format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
         error_log {d}/error.log warn;\nevents {{ worker_connections 1024; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         include {d}/{site};\n}}\n"
    )
}

/// A running nginx, killed on drop.
pub struct Nginx {
    child: Child,
    /// The loopback port it listens on.
    pub port: u16,
    dir: PathBuf,
}

impl Nginx {
    /// nginx serving `site` in front of the herald public listener at
    /// `upstream`: the site's `server 127.0.0.1:8080;` and `listen 80;`
    /// become the real addresses (a site without them is a broken test,
    /// and panics). `None` (a loud skip) without nginx; panics with
    /// nginx's error log when it does not start.
    pub fn start(upstream: SocketAddr, site: &str) -> Option<Nginx> {
        let nginx = need("nginx")?;
        assert!(
            site.contains("server 127.0.0.1:8080;") && site.contains("listen 80;"),
            "the site names no upstream or listen address to substitute"
        );
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("herald-nginx-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let site = site
            .replace("server 127.0.0.1:8080;", &format!("server {upstream};"))
            .replace("listen 80;", &format!("listen 127.0.0.1:{port};"));
        std::fs::write(dir.join("herald.conf"), site).unwrap();
        std::fs::write(dir.join("nginx.conf"), main_conf(&dir, "herald.conf")).unwrap();
        let d = dir.display();
        let child = Command::new(nginx)
            .args(["-p", &d.to_string(), "-e", &format!("{d}/error.log")])
            .args(["-c", &format!("{d}/nginx.conf")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let mut me = Nginx { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline || me.child.try_wait().ok().flatten().is_some() {
                let log = std::fs::read_to_string(me.dir.join("error.log")).unwrap_or_default();
                panic!("nginx did not start:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(me)
    }

    /// `http://127.0.0.1:PORT` and `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
