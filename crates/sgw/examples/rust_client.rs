//! A Rust client for sgw: `supervisor_gateway::client::connect(path)` opens
//! a tonic channel over the Unix socket and hands out the generated
//! `ControlService` and `JournalService` clients.
//!
//! ```sh
//! cargo run --example rust_client -- [--socket PATH] [--child ID] [--events N]
//! ```
//!
//! Prints one JSON object per line, like the Python and Node examples:
//! GetInfo, GetState, PauseChild then ResumeChild on `--child` (default: the
//! first child), an error with its `ErrorInfo` reason, and the first N
//! events of SubscribeEvents with the backlog.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::json;
use supervisor_gateway::client;
use supervisor_gateway::pb;
use supervisor_gateway::pb::subscribe_events_response::Item;
use supervisor_gateway::transport::socket::default_socket_path;
use tonic_types::StatusExt;

/// What to connect to and how much to read.
#[derive(Debug, Clone)]
pub struct Options {
    pub socket: PathBuf,
    pub child: Option<String>,
    pub events: usize,
}

impl Options {
    /// `--socket PATH` (default: `$SGW_SOCKET`, `$XDG_RUNTIME_DIR/sgw/sgw.sock`,
    /// `/tmp/sgw-$UID/sgw.sock`), `--child ID`, `--events N` (default 5).
    pub fn from_args(mut args: impl Iterator<Item = String>) -> Result<Self, String> {
        let mut options = Options {
            socket: default_socket_path(),
            child: None,
            events: 5,
        };
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or(format!("{flag} needs a value"));
            match flag.as_str() {
                "--socket" => options.socket = value()?.into(),
                "--child" => options.child = Some(value()?),
                "--events" => {
                    options.events = value()?.parse().map_err(|e| format!("--events: {e}"))?;
                }
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        Ok(options)
    }
}

fn state_name(raw: i32) -> &'static str {
    pb::ChildState::try_from(raw).map_or("UNKNOWN", |s| s.as_str_name())
}

/// Runs the calls, writing one JSON line per result to `out`.
pub async fn run(
    options: &Options,
    out: &mut impl Write,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut client = client::connect(&options.socket).await?;

    let info = client
        .control
        .get_info(pb::GetInfoRequest {})
        .await?
        .into_inner();
    let caller = info.caller.unwrap_or_default();
    writeln!(
        out,
        "{}",
        json!({
            "call": "GetInfo",
            "target_id": info.target_id,
            "protocol_version": info.protocol_version,
            "server_version": info.server_version,
            "caller_uid": caller.uid,
            "caller_pid": caller.pid,
        })
    )?;

    let state = client
        .control
        .get_state(pb::GetStateRequest {})
        .await?
        .into_inner();
    let children: Vec<_> = state
        .children
        .iter()
        .map(|c| json!({"child_id": c.child_id, "state": state_name(c.state)}))
        .collect();
    writeln!(
        out,
        "{}",
        json!({
            "call": "GetState",
            "children": children,
            "last_event_sequence": state.last_event_sequence,
        })
    )?;

    let child_id = match (&options.child, state.children.first()) {
        (Some(id), _) => id.clone(),
        (None, Some(first)) => first.child_id.clone(),
        (None, None) => return Err("the server has no children".into()),
    };
    let meta = Some(pb::CommandMeta {
        reason: "rust example".into(),
        ..Default::default()
    });
    let paused = client
        .control
        .pause_child(pb::PauseChildRequest {
            child_id: child_id.clone(),
            meta: meta.clone(),
        })
        .await?
        .into_inner()
        .result;
    let resumed = client
        .control
        .resume_child(pb::ResumeChildRequest {
            child_id: child_id.clone(),
            meta,
        })
        .await?
        .into_inner()
        .result;
    for (call, result) in [("PauseChild", paused), ("ResumeChild", resumed)] {
        let result = result.unwrap_or_default();
        writeln!(
            out,
            "{}",
            json!({
                "call": call,
                "child_id": child_id,
                "command_id": result.command_id,
                "outcome": result.outcome,
                "state": state_name(result.child.map_or(0, |c| c.state)),
            })
        )?;
    }

    // Errors carry a google.rpc.ErrorInfo; tonic-types decodes it.
    let missing = client
        .control
        .get_child(pb::GetChildRequest {
            child_id: "no-such-child".into(),
        })
        .await;
    if let Err(status) = missing {
        let reason = status
            .get_details_error_info()
            .map(|info| info.reason)
            .unwrap_or_default();
        writeln!(
            out,
            "{}",
            json!({
                "call": "GetChild",
                "code": format!("{:?}", status.code()),
                "message": status.message(),
                "reason": reason,
            })
        )?;
    }

    // Bounded: the stream follows live forever; dropping it cancels the call.
    let mut stream = client
        .journal
        .subscribe_events(pb::SubscribeEventsRequest {
            include_backlog: true,
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut received = 0;
    while received < options.events {
        let Some(response) = stream.message().await? else {
            break;
        };
        match response.item {
            Some(Item::Event(event)) => {
                received += 1;
                let event_type = pb::EventType::try_from(event.event_type)
                    .map_or("UNKNOWN", |t| t.as_str_name());
                writeln!(
                    out,
                    "{}",
                    json!({
                        "call": "SubscribeEvents",
                        "sequence": event.sequence,
                        "event_type": event_type,
                        "child_id": event.child_id,
                    })
                )?;
            }
            Some(Item::Gap(gap)) => writeln!(
                out,
                "{}",
                json!({
                    "call": "SubscribeEvents",
                    "gap": {"first_missing": gap.first_missing, "last_missing": gap.last_missing},
                })
            )?,
            // The journal's id (to resume with), and a reset when a
            // resume position is not honoured: none here.
            Some(Item::Start(_) | Item::Reset(_)) | None => {}
        }
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let options = match Options::from_args(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(error) => {
            eprintln!("usage: rust_client [--socket PATH] [--child ID] [--events N]: {error}");
            return ExitCode::from(2);
        }
    };
    match run(&options, &mut std::io::stdout()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
