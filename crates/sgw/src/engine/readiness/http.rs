//! The `http` probe: a GET answered with 2xx or 3xx. HTTP/1.1 through
//! hyper's client, one connection per probe (no pooling: a probe checks
//! that new connections are served).

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_util::task::AbortOnDropHandle;

use super::probe::{MAX_OUTPUT, bounded};
use crate::model::HttpTarget;

pub(super) async fn run(target: &HttpTarget) -> Result<(), String> {
    let address = target.address();
    let stream = TcpStream::connect((address.host.as_str(), address.port))
        .await
        .map_err(|error| format!("connect to {address}: {error}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| format!("HTTP handshake with {address}: {error}"))?;
    // The connection is driven by its own task, aborted with the probe (a
    // hung server must not keep it alive past the timeout).
    let _driver = AbortOnDropHandle::new(tokio::spawn(async move {
        let _ = connection.await;
    }));
    let path = target
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let request = http::Request::get(path)
        .header(http::header::HOST, authority(target))
        .header(http::header::USER_AGENT, "sgw-probe")
        .body(Empty::<Bytes>::new())
        .map_err(|error| format!("GET {target}: {error}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|error| format!("GET {target}: {error}"))?;
    let status = response.status();
    if status.is_success() || status.is_redirection() {
        return Ok(());
    }
    let body = first_bytes(response.into_body()).await;
    let reason = status.canonical_reason().unwrap_or("");
    Err(bounded(&format!(
        "HTTP {} {reason}: {body}",
        status.as_u16()
    )))
}

fn authority(target: &HttpTarget) -> String {
    target
        .uri
        .authority()
        .map_or_else(|| target.address().to_string(), |a| a.as_str().to_owned())
}

/// Up to [`MAX_OUTPUT`] bytes of the body, for the event.
async fn first_bytes(mut body: hyper::body::Incoming) -> String {
    let mut kept = Vec::new();
    while kept.len() < MAX_OUTPUT {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    kept.extend_from_slice(data);
                }
            }
            _ => break,
        }
    }
    kept.truncate(MAX_OUTPUT);
    String::from_utf8_lossy(&kept).into_owned()
}
