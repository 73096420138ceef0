//! End-to-end through a real nginx running the shipped configuration
//! (deploy/nginx/herald.conf, with only the addresses substituted): every
//! transport must work through it, and streams must not be buffered.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use herald_testkit::{Endpoints, Server, client, free_port, need, sse::Sse, ws};
use serde_json::{Value, json};

/// A running nginx with its own prefix directory, stopped on drop.
struct Nginx {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Nginx {
    fn start(herald: &Endpoints) -> Option<Nginx> {
        let nginx = need("nginx")?;
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("herald-nginx-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let shipped = include_str!("../deploy/nginx/herald.conf");
        assert!(shipped.contains("server 127.0.0.1:8080;") && shipped.contains("listen 80;"));
        let site = shipped
            .replace(
                "server 127.0.0.1:8080;",
                &format!("server {};", herald.public),
            )
            .replace("listen 80;", &format!("listen 127.0.0.1:{port};"));
        std::fs::write(dir.join("herald.conf"), site).unwrap();
        let d = dir.display();
        let main = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\nevents {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
             include {d}/herald.conf;\n}}\n"
        );
        std::fs::write(dir.join("nginx.conf"), main).unwrap();
        let child = Command::new(nginx)
            .args([
                "-p",
                &d.to_string(),
                "-e",
                &format!("{d}/error.log"),
                "-c",
                &format!("{d}/nginx.conf"),
            ])
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

    fn url(&self, path: &str) -> String {
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

#[tokio::test]
async fn polls_pass_through_nginx() {
    let s = Server::start(&[]).await;
    let Some(nginx) = Nginx::start(&s) else {
        return;
    };
    let c = client();
    let v: Value = c
        .get(nginx.url("/poll/news"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let cursor = v["cursor"].as_str().unwrap().to_string();
    s.publish("news", "via nginx").await;
    let v: Value = c
        .get(nginx.url(&format!("/poll/news?since={cursor}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["messages"][0]["data"], "via nginx");
    let health = c.get(nginx.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    // The internal listener is not reachable through the proxy.
    let res = c
        .post(nginx.url("/publish/news"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn a_held_long_poll_is_answered_through_nginx() {
    let s = Server::start(&[]).await;
    let Some(nginx) = Nginx::start(&s) else {
        return;
    };
    let c = client();
    let held = tokio::spawn({
        let url = nginx.url("/longpoll/lp?timeout=20");
        let c = c.clone();
        async move {
            c.get(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    });
    s.wait_subscribers("lp", 1, Duration::from_secs(5)).await;
    let started = Instant::now();
    s.publish("lp", "released").await;
    let v = tokio::time::timeout(Duration::from_secs(5), held)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v["messages"][0]["data"], "released");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn sse_is_not_buffered_by_nginx() {
    let s = Server::start(&[]).await;
    let Some(nginx) = Nginx::start(&s) else {
        return;
    };
    // The opening comment arrives at once, before any message (the
    // reader fails on a stall).
    let mut sse = Sse::open(&client(), &nginx.url("/sse/live"), None).await;
    assert_eq!(sse.res_headers["content-type"], "text/event-stream");
    s.wait_subscribers("live", 1, Duration::from_secs(5)).await;
    s.publish("live", "streamed").await;
    assert_eq!(sse.event().await.data(), "streamed", "event unbuffered");
}

#[tokio::test]
async fn websockets_pass_through_nginx() {
    let s = Server::start(&[]).await;
    let Some(nginx) = Nginx::start(&s) else {
        return;
    };
    let url = nginx.url("/ws/live").replacen("http", "ws", 1);
    let mut ws = ws::open(&url).await;
    let mut frames = Vec::new();
    s.publish("live", "via nginx").await;
    ws::send(&mut ws, json!({"type": "ping", "ref": "p"})).await;
    // subscribed, the message, and the pong, both ways through the proxy.
    while frames.len() < 3 {
        frames.push(ws::next(&mut ws).await);
    }
    assert_eq!(frames[0]["type"], "subscribed");
    assert!(
        frames.iter().any(|f| f["data"] == "via nginx"),
        "{frames:?}"
    );
    assert!(frames.iter().any(|f| f["type"] == "pong"), "{frames:?}");
}
