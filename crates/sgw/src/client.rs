//! A Rust client for the gateway: a tonic channel over the Unix socket and
//! the generated clients on top of it.

use std::io;
use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};
use tower::service_fn;

use crate::pb::control_service_client::ControlServiceClient;
use crate::pb::journal_service_client::JournalServiceClient;

/// Connected clients for both services, sharing one HTTP/2 connection.
#[derive(Debug, Clone)]
pub struct Client {
    pub control: ControlServiceClient<Channel>,
    pub journal: JournalServiceClient<Channel>,
    pub channel: Channel,
}

/// Opens a channel to the gateway listening on `path`. The URI is a
/// placeholder (`:authority` = localhost); every connection goes to the
/// socket.
pub async fn channel(path: impl AsRef<Path>) -> Result<Channel, tonic::transport::Error> {
    let path: PathBuf = path.as_ref().to_path_buf();
    Endpoint::from_static("http://localhost")
        .connect_with_connector(service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
}

/// Connects to the gateway on `path`.
pub async fn connect(path: impl AsRef<Path>) -> Result<Client, tonic::transport::Error> {
    let channel = channel(path).await?;
    Ok(Client {
        control: ControlServiceClient::new(channel.clone()),
        journal: JournalServiceClient::new(channel.clone()),
        channel,
    })
}
