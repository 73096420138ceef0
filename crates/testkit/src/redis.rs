//! A throwaway `redis-server` for tests: its own free port, no persistence,
//! killed on drop. It can be killed and started again on the same port (an
//! empty Redis, as after a crash without persistence), and answers plain
//! commands over a raw connection so that tests can look at the keys.
//!
//! Used through [`crate::redis()`] by the end-to-end tests, and includable
//! by path (`#[path = ".../testkit/src/redis.rs"] mod redis_server;`) by
//! the Redis engine's own tests, which the kit itself depends on; so it
//! uses nothing but std.

use std::{
    io::{BufRead, BufReader, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A running `redis-server`.
pub struct RedisServer {
    program: PathBuf,
    child: Option<Child>,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
}

impl RedisServer {
    /// Starts `program` (a `redis-server`) on a free port and waits until it
    /// answers.
    pub fn start(program: &Path) -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut server = RedisServer {
            program: program.to_path_buf(),
            child: None,
            port,
        };
        server.restart();
        server
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL: a crash) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty (killing it first if
    /// it runs), and waits until it answers.
    pub fn restart(&mut self) {
        self.kill();
        let port = self.port.to_string();
        let child = Command::new(&self.program)
            .args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "no", "--protected-mode", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.try_command(&["PING"]).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs one command; answers the reply's strings (one for a simple or
    /// bulk reply, one per element for an array, the number for an integer).
    pub fn command(&self, args: &[&str]) -> Vec<String> {
        self.try_command(args).expect("redis command")
    }

    /// The keys matching `pattern`, sorted.
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let mut keys = self.command(&["KEYS", pattern]);
        keys.sort();
        keys
    }

    fn try_command(&self, args: &[&str]) -> std::io::Result<Vec<String>> {
        let mut conn = TcpStream::connect(("127.0.0.1", self.port))?;
        conn.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut out = format!("*{}\r\n", args.len());
        for a in args {
            out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        conn.write_all(out.as_bytes())?;
        let mut reader = BufReader::new(conn);
        let head = line(&mut reader)?;
        let (kind, rest) = head.split_at(1);
        let bad = |what: &str| std::io::Error::other(format!("{what}: {head}"));
        match kind {
            "+" | ":" => Ok(vec![rest.to_string()]),
            "$" => Ok(bulk(&mut reader, rest)?.into_iter().collect()),
            "*" => {
                let n: usize = rest.parse().map_err(|_| bad("bad array"))?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    let len = line(&mut reader)?;
                    items.extend(bulk(&mut reader, &len[1..])?);
                }
                Ok(items)
            }
            _ => Err(bad("redis error")),
        }
    }
}

fn line(r: &mut impl BufRead) -> std::io::Result<String> {
    let mut s = String::new();
    r.read_line(&mut s)?;
    Ok(s.trim_end().to_string())
}

fn bulk(r: &mut impl BufRead, len: &str) -> std::io::Result<Option<String>> {
    let Ok(len) = len.parse::<usize>() else {
        return Ok(None); // $-1: nil
    };
    let mut buf = vec![0; len + 2];
    r.read_exact(&mut buf)?;
    buf.truncate(len);
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
