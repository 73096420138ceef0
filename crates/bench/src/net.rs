//! Client connections: TCP from a chosen loopback source address, an HTTP/1
//! connection on it (hyper), or a WebSocket (tokio-tungstenite).
//!
//! Spreading sources over `127.0.0.x` gives each address its own ephemeral
//! port range, so tens of thousands of connections to one server port never
//! run out of ports. Buffers are sized for many connections, not for
//! throughput: the client must stay cheap enough that ten thousand
//! subscribers in one process measure the server, not the client. Nothing
//! here knows about gateways or payloads.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, header};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, client::conn::http1};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::{WebSocketStream, tungstenite::protocol::WebSocketConfig};

use crate::Error;

/// The source address of connection number `i` when sources are spread
/// over `spread` addresses (`127.0.0.1`, `127.0.0.2`, ...). IPv6 targets
/// always use `::1`.
pub fn source(to: SocketAddr, i: usize, spread: usize) -> IpAddr {
    match to {
        SocketAddr::V4(_) => {
            let n = (i % spread.clamp(1, 254)) as u8;
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + n))
        }
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
    }
}

/// A TCP connection to `to` from `from` (any port), without Nagle's delay.
pub async fn connect(to: SocketAddr, from: IpAddr) -> Result<TcpStream, Error> {
    let sock = match to {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    sock.bind(SocketAddr::new(from, 0))?;
    let stream = sock.connect(to).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// One keep-alive HTTP/1.1 connection. The connection's driver runs in its
/// own task and ends when this handle and every response body are gone.
pub struct Http {
    send: http1::SendRequest<Full<Bytes>>,
    host: HeaderValue,
}

impl Http {
    /// Connects to `to` from `from`. Fails when the TCP connection does.
    pub async fn open(to: SocketAddr, from: IpAddr) -> Result<Http, Error> {
        let io = TokioIo::new(connect(to, from).await?);
        let (send, conn) = http1::Builder::new()
            .max_buf_size(64 * 1024)
            .handshake(io)
            .await?;
        tokio::spawn(conn);
        let host = HeaderValue::from_str(&to.to_string()).expect("an address is a valid host");
        Ok(Http { send, host })
    }

    /// Whether the server closed the connection (a new one is needed).
    pub fn is_closed(&self) -> bool {
        self.send.is_closed()
    }

    /// `GET path` with extra `headers`; answers the response head (the body
    /// streams). Fails when the connection does.
    pub async fn get(
        &mut self,
        path: &str,
        headers: &[(HeaderName, &HeaderValue)],
    ) -> Result<Response<Incoming>, Error> {
        let mut req = Request::get(path).body(Full::new(Bytes::new()))?;
        self.send_req(&mut req, headers);
        self.send.ready().await?;
        Ok(self.send.send_request(req).await?)
    }

    /// `POST path` with `body` of `content_type`; answers the status and
    /// drops the body. Fails when the connection does.
    pub async fn post(
        &mut self,
        path: &str,
        content_type: &str,
        body: Bytes,
    ) -> Result<u16, Error> {
        let mut req = Request::post(path).body(Full::new(body))?;
        let ct = HeaderValue::from_str(content_type).expect("a static content type");
        self.send_req(&mut req, &[(header::CONTENT_TYPE, &ct)]);
        self.send.ready().await?;
        let res = self.send.send_request(req).await?;
        let status = res.status().as_u16();
        res.into_body().collect().await?;
        Ok(status)
    }

    fn send_req(&self, req: &mut Request<Full<Bytes>>, headers: &[(HeaderName, &HeaderValue)]) {
        let h = req.headers_mut();
        h.insert(header::HOST, self.host.clone());
        for (k, v) in headers {
            h.insert(k.clone(), (*v).clone());
        }
    }
}

/// Reads the whole of `body` into `buf` (cleared first, capacity kept).
pub async fn read_body(mut body: Incoming, buf: &mut Vec<u8>) -> Result<(), Error> {
    buf.clear();
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            buf.extend_from_slice(data);
        }
    }
    Ok(())
}

/// A WebSocket client.
pub type Ws = WebSocketStream<TcpStream>;

/// Opens a WebSocket to `ws://to{path}` from `from`, with 4 KiB of read
/// buffer and unbuffered writes (tungstenite allocates 128 KiB of each by
/// default, eagerly). Fails when the connection or the upgrade does.
pub async fn websocket(to: SocketAddr, from: IpAddr, path: &str) -> Result<Ws, Error> {
    let stream = connect(to, from).await?;
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let url = format!("ws://{to}{path}");
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config)).await?;
    Ok(ws)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_spread_over_loopback() {
        let to: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(source(to, 0, 4).to_string(), "127.0.0.1");
        assert_eq!(source(to, 5, 4).to_string(), "127.0.0.2");
        assert!(source(to, 9999, 1000).is_loopback());
        assert_eq!(source("[::1]:1".parse().unwrap(), 3, 4).to_string(), "::1");
    }
}
