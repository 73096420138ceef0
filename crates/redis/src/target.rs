//! Where Redis is, as operators run it: one server named by a URL
//! (`redis://`, or `rediss://` for TLS, trusting the system's certificate
//! authorities or the PEM file [`Config::tls_ca`] names), or the primary
//! that Redis Sentinel names for a master (`redis+sentinel://`).
//!
//! A [`Target`] answers a [`redis::Client`] for the server to talk to now.
//! For one server that never changes. Through Sentinel it is asked again
//! whenever commands fail, so that after a failover the engine follows the
//! promoted replica (see the engine's monitor). What it leaves out: Redis
//! Cluster, TLS to the sentinels themselves, and any retrying (the engine
//! decides when to ask again).
//!
//! The Sentinel URL form is
//! `redis+sentinel://[[user]:password@]host:port[,host:port…]/master[/db]`:
//! the hosts are sentinels, `master` is the name they monitor, and the user
//! and password are those of the primary (sentinels are reached without).

use redis::{
    Client, ConnectionAddr, RedisResult, TlsCertificates,
    sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType},
};
use tokio::sync::Mutex;

use crate::{Config, Error};

const SENTINEL_SCHEME: &str = "redis+sentinel://";

/// The Redis server (or the Sentinel-monitored master) the engine uses.
pub(crate) enum Target {
    /// One server, by URL.
    Direct(Client),
    /// The current primary of a master monitored by Sentinel. The lock
    /// serialises questions to the sentinels (the client keeps state).
    Sentinel(Mutex<SentinelClient>),
}

impl Target {
    /// Reads the configuration (and the CA file it names). Fails with
    /// [`Error::InvalidUrl`] for a URL that does not parse, and
    /// [`Error::Certificate`] for a CA file that cannot be read or used.
    pub(crate) fn new(config: &Config) -> Result<Target, Error> {
        if let Some(rest) = config.url.strip_prefix(SENTINEL_SCHEME) {
            return sentinel(rest).map(|c| Target::Sentinel(Mutex::new(c)));
        }
        let invalid = |e: redis::RedisError| Error::InvalidUrl(e.to_string());
        let Some(path) = &config.tls_ca else {
            return Client::open(config.url.as_str())
                .map(Target::Direct)
                .map_err(invalid);
        };
        if !config.url.starts_with("rediss://") {
            return Err(Error::Certificate(
                "a CA file is only used with a rediss:// URL".into(),
            ));
        }
        let pem = std::fs::read(path)
            .map_err(|e| Error::Certificate(format!("cannot read {path}: {e}")))?;
        let certificates = TlsCertificates {
            client_tls: None,
            root_cert: Some(pem),
        };
        Client::build_with_tls(config.url.as_str(), certificates)
            .map(Target::Direct)
            .map_err(|e| Error::Certificate(format!("{path}: {e}")))
    }

    /// The client for the server to use now: the one server, or the primary
    /// the sentinels name at this moment. Fails when no sentinel answers.
    pub(crate) async fn client(&self) -> RedisResult<Client> {
        match self {
            Target::Direct(client) => Ok(client.clone()),
            Target::Sentinel(sentinel) => sentinel.lock().await.async_get_client().await,
        }
    }

    /// Whether the server can change under the engine (a failover).
    pub(crate) fn follows_failover(&self) -> bool {
        matches!(self, Target::Sentinel(_))
    }
}

/// `host:port` of a client's server, to notice that the primary moved.
pub(crate) fn address(client: &Client) -> String {
    client.get_connection_info().addr().to_string()
}

/// Parses the part of a Sentinel URL after its scheme.
fn sentinel(rest: &str) -> Result<SentinelClient, Error> {
    let invalid = |why: &str| Error::InvalidUrl(format!("{SENTINEL_SCHEME} URL: {why}"));
    let (login, rest) = match rest.rsplit_once('@') {
        Some((login, rest)) => (Some(login), rest),
        None => (None, rest),
    };
    let (hosts, path) = rest
        .split_once('/')
        .ok_or_else(|| invalid("the master name is missing (…/mymaster)"))?;
    let mut path = path.split('/').filter(|s| !s.is_empty());
    let master = path
        .next()
        .ok_or_else(|| invalid("the master name is missing (…/mymaster)"))?;
    let db = match path.next() {
        Some(db) => Some(
            db.parse::<i64>()
                .map_err(|_| invalid("the database must be a number"))?,
        ),
        None => None,
    };
    let mut sentinels = Vec::new();
    for host in hosts.split(',').filter(|h| !h.is_empty()) {
        let (name, port) = host.rsplit_once(':').unwrap_or((host, "26379"));
        let port = port
            .parse()
            .map_err(|_| invalid("a sentinel port is not a number"))?;
        sentinels.push(ConnectionAddr::Tcp(name.to_string(), port));
    }
    if sentinels.is_empty() {
        return Err(invalid("no sentinel address"));
    }
    let fail = |e: redis::RedisError| Error::InvalidUrl(e.to_string());
    let mut builder =
        SentinelClientBuilder::new(sentinels, master, SentinelServerType::Master).map_err(fail)?;
    if let Some(login) = login {
        let (user, password) = login.split_once(':').unwrap_or(("", login));
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        if !user.is_empty() {
            builder = builder.set_client_to_redis_username(decode(user));
        }
        if !password.is_empty() {
            builder = builder.set_client_to_redis_password(decode(password));
        }
    }
    if let Some(db) = db {
        builder = builder.set_client_to_redis_db(db);
    }
    builder.build().map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Result<Target, Error> {
        Target::new(&Config {
            url: url.into(),
            ..Config::default()
        })
    }

    #[test]
    fn sentinel_urls_parse() {
        for url in [
            "redis+sentinel://127.0.0.1:26379/mymaster",
            "redis+sentinel://:pw@a:1,b:2,c/mymaster/3",
            "redis+sentinel://user:p%40ss@a:1/mymaster/",
        ] {
            let t = target(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert!(t.follows_failover(), "{url}");
        }
        for url in [
            "redis+sentinel://127.0.0.1:26379",
            "redis+sentinel://127.0.0.1:26379/",
            "redis+sentinel:///mymaster",
            "redis+sentinel://a:port/mymaster",
            "redis+sentinel://a:1/mymaster/zero",
        ] {
            assert!(
                matches!(target(url), Err(Error::InvalidUrl(_))),
                "{url} was accepted"
            );
        }
    }

    #[test]
    fn plain_urls_do_not_follow_failovers() {
        assert!(!target("redis://127.0.0.1:6379").unwrap().follows_failover());
        assert!(
            !target("rediss://127.0.0.1:6379")
                .unwrap()
                .follows_failover()
        );
        assert!(matches!(target("http://x"), Err(Error::InvalidUrl(_))));
    }

    #[test]
    fn a_ca_file_must_exist_and_go_with_tls() {
        let with_ca = |url: &str, ca: &str| {
            Target::new(&Config {
                url: url.into(),
                tls_ca: Some(ca.into()),
                ..Config::default()
            })
        };
        assert!(matches!(
            with_ca("rediss://127.0.0.1:6379", "/nonexistent/ca.pem"),
            Err(Error::Certificate(_))
        ));
        let file = std::env::temp_dir().join(format!("herald-ca-{}.pem", std::process::id()));
        std::fs::write(&file, "not a certificate").unwrap();
        let path = file.to_str().unwrap();
        assert!(matches!(
            with_ca("redis://127.0.0.1:6379", path),
            Err(Error::Certificate(_))
        ));
        let _ = std::fs::remove_file(&file);
    }
}
