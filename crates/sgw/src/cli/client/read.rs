//! `sgw info`, `sgw state`, `sgw child ID`: one unary call each.

use super::{CliError, Conn, human, json};
use crate::pb;

pub async fn info(conn: &Conn) -> Result<(), CliError> {
    let mut client = conn.connect().await?;
    let info = client
        .control
        .get_info(pb::GetInfoRequest {})
        .await?
        .into_inner();
    conn.print(|| json::info(&info), || human::info(&info, &conn.path()))
}

pub async fn state(conn: &Conn) -> Result<(), CliError> {
    let mut client = conn.connect().await?;
    let state = client
        .control
        .get_state(pb::GetStateRequest {})
        .await?
        .into_inner();
    conn.print(|| json::state(&state), || human::state_table(&state))
}

pub async fn child(conn: &Conn, child_id: String) -> Result<(), CliError> {
    let mut client = conn.connect().await?;
    let response = client
        .control
        .get_child(pb::GetChildRequest { child_id })
        .await?
        .into_inner();
    let record = response.child.unwrap_or_default();
    conn.print(
        || serde_json::json!({"child": json::record(&record)}),
        || human::child(&record),
    )
}
