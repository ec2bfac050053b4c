//! A scripted [`ControlPlane`]: transport tests drive the real gRPC and
//! legacy stacks over a real socket without spawning a single process.
//! Each command pops the next scripted outcome; every request is recorded.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::SystemTime;

use supervisor_gateway::control::{
    CommandReport, CommandRequest, ControlError, ControlPlane, StateSnapshot, TargetInfo,
};
use supervisor_gateway::journal::{EventJournal, Journal, LogJournal};
use supervisor_gateway::model::{ChildId, ChildRecord, CommandKind, ContainmentInfo};

/// What the next command answers.
pub type Outcome = Result<String, ControlError>;

#[derive(Debug)]
pub struct ScriptedControl {
    target_id: String,
    events: EventJournal,
    logs: LogJournal,
    script: Mutex<VecDeque<Outcome>>,
    executed: Mutex<Vec<CommandRequest>>,
}

impl ScriptedControl {
    /// Commands answer `outcomes` in order, then "done".
    pub fn new(target_id: &str, outcomes: impl IntoIterator<Item = Outcome>) -> Self {
        Self {
            target_id: target_id.to_owned(),
            events: Journal::new(64),
            logs: LogJournal::new(64),
            script: Mutex::new(outcomes.into_iter().collect()),
            executed: Mutex::default(),
        }
    }

    /// The commands that reached the control plane, in order.
    pub fn executed(&self) -> Vec<CommandRequest> {
        self.executed.lock().expect("lock").clone()
    }
}

impl ControlPlane for ScriptedControl {
    fn info(&self) -> TargetInfo {
        TargetInfo {
            target_id: self.target_id.clone(),
            display_name: "scripted".into(),
            server_version: "test".into(),
            supported_commands: CommandKind::ALL.to_vec(),
            containment: ContainmentInfo::default(),
            journal_id: "0123456789abcdef0123456789abcdef".into(),
        }
    }

    async fn state(&self) -> StateSnapshot {
        StateSnapshot {
            children: Vec::new(),
            state_generation: 1,
            last_event_sequence: self.events.last_sequence(),
            last_log_sequence: self.logs.last_sequence(),
            dropped_events: 0,
            dropped_logs: 0,
            journal_id: "0123456789abcdef0123456789abcdef".into(),
        }
    }

    async fn child(&self, id: &ChildId) -> Result<ChildRecord, ControlError> {
        Err(ControlError::NotFound {
            id: id.to_string(),
            known: Vec::new(),
        })
    }

    async fn execute(&self, request: CommandRequest) -> Result<CommandReport, ControlError> {
        let command = request.command().kind();
        self.executed.lock().expect("lock").push(request);
        let next = self.script.lock().expect("lock").pop_front();
        let outcome = next.unwrap_or_else(|| Ok("done".to_owned()))?;
        Ok(CommandReport {
            command_id: "scripted-1".into(),
            command,
            outcome,
            child: None,
            completed_at: SystemTime::now(),
        })
    }

    fn events(&self) -> &EventJournal {
        &self.events
    }

    fn logs(&self) -> &LogJournal {
        &self.logs
    }

    async fn terminated(&self) {
        std::future::pending::<()>().await;
    }
}
