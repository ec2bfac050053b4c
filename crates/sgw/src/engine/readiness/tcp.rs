//! The `tcp` probe: the port accepts a connection.

use tokio::net::TcpStream;

use crate::model::TcpTarget;

pub(super) async fn run(target: &TcpTarget) -> Result<(), String> {
    TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map(drop)
        .map_err(|error| format!("connect to {target}: {error}"))
}
