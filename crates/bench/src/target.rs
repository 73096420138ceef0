//! What is measured: the gateway (herald, nchan or Pushpin), its addresses,
//! and how each of them spells a subscription and a publish.
//!
//! This is the only place that knows the three systems' URL schemes; the
//! scenarios and the subscriber loops ask it. It does not open connections
//! (that is `net`) and refuses any address outside loopback, so a benchmark
//! can never send its load anywhere else.

use std::{fmt, net::SocketAddr, str::FromStr};

use serde::Serialize;

use crate::Error;

/// A gateway the benchmark can drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum System {
    /// herald: `/poll`, `/longpoll`, `/sse`, `/ws` on the public listener,
    /// `POST /publish/{channel}` on the internal one.
    Herald,
    /// nchan (nginx module): `/sub/{channel}` for WebSocket, SSE and
    /// long-poll, `/poll/{channel}`, `POST /pub/{channel}`.
    Nchan,
    /// Pushpin with the GRIP origin of `shared/peers`: `/ws`, `/sse`,
    /// `/longpoll`, and `POST /publish/` on the control port.
    Pushpin,
}

/// How subscribers receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// WebSocket: one text frame per message.
    Ws,
    /// Server-Sent Events.
    Sse,
    /// Long polling: one held request per answer, cursor carried over.
    Longpoll,
    /// Short polling: ask, get what is new or 304, wait, ask again.
    Poll,
}

impl fmt::Display for System {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            System::Herald => "herald",
            System::Nchan => "nchan",
            System::Pushpin => "pushpin",
        })
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Ws => "ws",
            Transport::Sse => "sse",
            Transport::Longpoll => "longpoll",
            Transport::Poll => "poll",
        })
    }
}

impl FromStr for System {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        <System as clap::ValueEnum>::from_str(s, true)
            .map_err(|_| Error::Usage(format!("unknown system {s:?}")))
    }
}

impl FromStr for Transport {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        <Transport as clap::ValueEnum>::from_str(s, true)
            .map_err(|_| Error::Usage(format!("unknown transport {s:?}")))
    }
}

/// A running gateway: which system, where subscribers connect, where the
/// publisher posts.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Which gateway.
    pub system: System,
    /// Subscriber address (herald's public listener, nchan's port,
    /// Pushpin's client port).
    pub sub: SocketAddr,
    /// Publish address (herald's internal listener, nchan's port, Pushpin's
    /// control port).
    pub publish: SocketAddr,
}

impl Target {
    /// A target; fails unless both addresses are on loopback.
    pub fn new(system: System, sub: SocketAddr, publish: SocketAddr) -> Result<Self, Error> {
        for a in [sub, publish] {
            if !a.ip().is_loopback() {
                return Err(Error::Usage(format!(
                    "{a} is not a loopback address; the benchmark only sends traffic to loopback"
                )));
            }
        }
        Ok(Target {
            system,
            sub,
            publish,
        })
    }

    /// The addresses `start` scripts use by default: herald 8080/8081, nchan
    /// 18180, Pushpin 17999 (clients) and 15561 (publish).
    pub fn default_for(system: System) -> Self {
        let at = |p| SocketAddr::from(([127, 0, 0, 1], p));
        let (sub, publish) = match system {
            System::Herald => (at(8080), at(8081)),
            System::Nchan => (at(18180), at(18180)),
            System::Pushpin => (at(17999), at(15561)),
        };
        Target {
            system,
            sub,
            publish,
        }
    }

    /// Whether this system serves `transport`; fails naming the pair when
    /// not (Pushpin keeps no history, so it has no short polling).
    pub fn supports(&self, transport: Transport) -> Result<(), Error> {
        if self.system == System::Pushpin && transport == Transport::Poll {
            return Err(Error::Unsupported(format!(
                "{} has no {transport} transport",
                self.system
            )));
        }
        Ok(())
    }

    /// Whether one POST can carry several messages.
    pub fn supports_batch(&self) -> Result<(), Error> {
        match self.system {
            System::Nchan => Err(Error::Unsupported("nchan has no batch publish".into())),
            _ => Ok(()),
        }
    }

    /// Path (and fixed query) of a subscription to `channel`. Cursor
    /// parameters are added by the subscriber loop.
    pub fn sub_path(&self, transport: Transport, channel: &str) -> String {
        let prefix = match (self.system, transport) {
            (System::Herald | System::Pushpin, Transport::Ws) => "ws",
            (System::Herald | System::Pushpin, Transport::Sse) => "sse",
            (System::Herald | System::Pushpin, Transport::Longpoll) => "longpoll",
            (_, Transport::Poll) => "poll",
            (System::Nchan, _) => "sub",
        };
        format!("/{prefix}/{channel}")
    }

    /// Path of a publish of one message to `channel` (or of a batch when
    /// `channel` is `None`).
    pub fn publish_path(&self, channel: Option<&str>) -> String {
        match (self.system, channel) {
            (System::Herald, Some(c)) => format!("/publish/{c}"),
            (System::Herald, None) => "/publish".into(),
            (System::Nchan, c) => format!("/pub/{}", c.unwrap_or_default()),
            (System::Pushpin, _) => "/publish/".into(),
        }
    }

    /// Whether a publish of one message goes out as a JSON document
    /// (Pushpin items) rather than the raw payload.
    pub fn publish_is_json(&self, batch: bool) -> bool {
        self.system == System::Pushpin || batch
    }

    /// Appends the body of a publish of `payloads` to `channel` to `out`:
    /// the raw payload (herald and nchan, one message), herald's batch
    /// document, or Pushpin items that reach all three of its transports.
    pub fn publish_body<'a>(
        &self,
        out: &mut Vec<u8>,
        channel: &str,
        payloads: impl Iterator<Item = (u64, &'a [u8])>,
        batch: bool,
    ) {
        use std::io::Write;
        let payloads = payloads.take(if batch { usize::MAX } else { 1 });
        match (self.system, batch) {
            (System::Herald | System::Nchan, false) => {
                for (_, p) in payloads {
                    out.extend_from_slice(p);
                }
            }
            (System::Herald, true) => {
                out.extend_from_slice(b"{\"messages\":[");
                for (i, (_, p)) in payloads.enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    let _ = write!(out, "{{\"channel\":\"{channel}\",\"data\":\"");
                    out.extend_from_slice(p);
                    out.extend_from_slice(b"\"}");
                }
                out.extend_from_slice(b"]}");
            }
            (System::Pushpin, _) => {
                out.extend_from_slice(b"{\"items\":[");
                for (i, (seq, p)) in payloads.enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    let _ = write!(
                        out,
                        "{{\"channel\":\"{channel}\",\"id\":\"{seq}\",\"formats\":{{\
                         \"http-stream\":{{\"content\":\"id: {seq}\\ndata: "
                    );
                    out.extend_from_slice(p);
                    out.extend_from_slice(
                        b"\\n\\n\"},\"http-response\":{\"headers\":{\"Content-Type\":\"text/plain\"},\"body\":\"",
                    );
                    out.extend_from_slice(p);
                    out.extend_from_slice(b"\"},\"ws-message\":{\"content\":\"");
                    out.extend_from_slice(p);
                    out.extend_from_slice(b"\"}}}");
                }
                out.extend_from_slice(b"]}");
            }
            (System::Nchan, true) => unreachable!("checked by supports_batch"),
        }
    }

    /// Whether `status` answers a successful publish.
    pub fn publish_ok(&self, status: u16) -> bool {
        match self.system {
            System::Herald => status == 202,
            System::Nchan => status == 201 || status == 202,
            System::Pushpin => status == 200,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback() {
        let ext: SocketAddr = "10.0.0.1:80".parse().unwrap();
        let lo: SocketAddr = "127.0.0.1:80".parse().unwrap();
        assert!(Target::new(System::Herald, ext, lo).is_err());
        assert!(Target::new(System::Herald, lo, lo).is_ok());
    }

    #[test]
    fn paths_per_system() {
        let h = Target::default_for(System::Herald);
        let n = Target::default_for(System::Nchan);
        assert_eq!(h.sub_path(Transport::Sse, "c"), "/sse/c");
        assert_eq!(n.sub_path(Transport::Sse, "c"), "/sub/c");
        assert_eq!(n.sub_path(Transport::Poll, "c"), "/poll/c");
        assert!(
            Target::default_for(System::Pushpin)
                .supports(Transport::Poll)
                .is_err()
        );
    }

    #[test]
    fn bodies_are_valid_json_where_json() {
        let p = crate::payload::stamped(5);
        for (sys, batch) in [(System::Herald, true), (System::Pushpin, false)] {
            let mut out = vec![];
            let t = Target::default_for(sys);
            t.publish_body(&mut out, "c", [(5, &p[..]), (6, &p[..])].into_iter(), batch);
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert!(v.is_object(), "{sys}");
            assert_eq!(
                crate::payload::scan(&out, |_, _| ()),
                if batch { 2 } else { 3 }
            );
        }
    }
}
