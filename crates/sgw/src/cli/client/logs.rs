//! `sgw logs`: the last N captured lines (all children, or `--child`), then
//! with `--follow` new lines as they are captured.

use clap::Args;

use super::{CliError, Conn, events::warn_unknown, human, json};
use crate::pb;
use crate::pb::tail_logs_response::Item;

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Keep the stream open and print new lines as they are captured.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// How many retained lines to print first.
    #[arg(long, short = 'n', value_name = "N", default_value_t = 10)]
    pub lines: u32,
    /// Only this child's output (repeatable).
    #[arg(long = "child", value_name = "ID")]
    pub children: Vec<String>,
    #[command(flatten)]
    pub conn: Conn,
}

pub async fn logs(args: LogsArgs) -> Result<(), CliError> {
    let mut client = args.conn.connect().await?;
    if !args.children.is_empty() {
        let state = client
            .control
            .get_state(pb::GetStateRequest {})
            .await?
            .into_inner();
        warn_unknown(&args.children, &state);
    }
    let request = pb::TailLogsRequest {
        child_ids: args.children.clone(),
        lines: args.lines,
        follow: args.follow,
        after_sequence: 0,
        journal_id: String::new(),
    };
    let mut stream = client.journal.tail_logs(request).await?.into_inner();
    while let Some(response) = stream.message().await? {
        match response.item {
            Some(Item::Line(line)) => args
                .conn
                .print(|| json::log_line(&line), || human::log_line(&line))?,
            Some(Item::Gap(gap)) => args.conn.print(
                || serde_json::json!({"gap": json::gap(&gap)}),
                || human::gap(&gap, "log lines"),
            )?,
            // `sgw logs` does not resume by sequence: nothing to check.
            Some(Item::Start(_) | Item::Reset(_)) | None => {}
        }
    }
    Ok(())
}
