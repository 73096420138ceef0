//! The one WebSocket client of the tests (tokio-tungstenite): connect,
//! send a JSON frame, read the next JSON frame (pings and pongs skipped),
//! subscribe, read the close code, and read a refused handshake.
//!
//! What it leaves out: the protocol's rules — tests assert them on the
//! JSON they get back.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::{net::TcpStream, time::timeout};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, connect_async,
    tungstenite::{Error as WsError, Message, client::IntoClientRequest},
};

use crate::Endpoints;

/// A client WebSocket.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Frames must arrive within this; every read waits on it, never longer.
pub const WAIT: Duration = Duration::from_secs(5);

/// Opens a WebSocket on the public listener's `path`; asserts the 101.
pub async fn connect(s: &Endpoints, path: &str) -> Ws {
    open(&s.ws_url(path)).await
}

/// Opens a WebSocket on any `ws://` URL (through a proxy, say); asserts
/// the 101.
pub async fn open(url: &str) -> Ws {
    let (ws, res) = connect_async(url).await.expect("upgrade");
    assert_eq!(res.status(), 101, "{url}");
    ws
}

/// The refused handshake's status and error code.
pub async fn refused(request: impl IntoClientRequest + Unpin) -> (u16, String) {
    match connect_async(request).await {
        Err(WsError::Http(res)) => {
            let body: Value = serde_json::from_slice(res.body().as_deref().unwrap_or(b"{}"))
                .expect("a JSON error body");
            (
                res.status().as_u16(),
                body["error"]["code"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        }
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
        Ok(_) => panic!("expected a refusal, got an upgrade"),
    }
}

/// Sends `v` as a text frame.
pub async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.expect("send");
}

/// The next text frame as JSON (pings and pongs are skipped).
pub async fn next(ws: &mut Ws) -> Value {
    loop {
        let m = timeout(WAIT, ws.next())
            .await
            .expect("a frame in time")
            .expect("connection open")
            .expect("a frame");
        match m {
            Message::Text(t) => return serde_json::from_str(&t).expect("JSON frame"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Reads until the server's close frame; answers its code.
pub async fn close_code(ws: &mut Ws) -> u16 {
    loop {
        match timeout(WAIT, ws.next()).await.expect("a close in time") {
            Some(Ok(Message::Close(Some(f)))) => return f.code.into(),
            Some(Ok(Message::Close(None))) => panic!("close without a code"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("connection failed before a close frame: {e}"),
            None => panic!("connection ended without a close frame"),
        }
    }
}

/// Subscribes to `channels` (with `extra` fields such as `since`) under
/// the ref `sub`; asserts and answers the `subscribed` reply.
pub async fn subscribe(ws: &mut Ws, channels: &[&str], extra: Value) -> Value {
    let mut frame = json!({"type": "subscribe", "channels": channels, "ref": "sub"});
    if let (Value::Object(f), Value::Object(e)) = (&mut frame, extra) {
        f.extend(e);
    }
    send(ws, frame).await;
    let v = next(ws).await;
    assert_eq!(v["type"], "subscribed", "{v}");
    assert_eq!(v["ref"], "sub");
    v
}

/// A round trip that proves nothing else is queued before it.
pub async fn assert_nothing_pending(ws: &mut Ws) {
    send(ws, json!({"type": "ping", "ref": "probe"})).await;
    let v = next(ws).await;
    assert_eq!(
        (v["type"].as_str(), v["ref"].as_str()),
        (Some("pong"), Some("probe")),
        "{v}"
    );
}
