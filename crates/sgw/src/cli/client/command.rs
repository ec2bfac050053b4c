//! The commands: restart, pause, resume, quarantine, and the destructive
//! remove, add and shutdown, which need `--yes` before anything is sent.

use std::path::Path;

use super::{ChangeArgs, CliError, Meta, human, json, spec_file};
use crate::pb;

/// The `CommandMeta` every command carries. `requested_by` stays empty:
/// the server fills it from the kernel's word on who we are.
fn command_meta(meta: &Meta, confirm: bool) -> Option<pb::CommandMeta> {
    Some(pb::CommandMeta {
        request_id: meta.request_id.clone().unwrap_or_default(),
        requested_by: String::new(),
        reason: meta.reason.clone(),
        confirm,
    })
}

/// A destructive command without `--yes` is a usage error (exit 2), found
/// before connecting, so a forgotten flag never reaches the server.
fn confirmed(yes: bool, what: String) -> Result<(), CliError> {
    if yes {
        Ok(())
    } else {
        Err(CliError::Usage(format!("{what}; pass --yes to confirm")))
    }
}

fn print(
    meta: &Meta,
    child_id: Option<&str>,
    result: Option<pb::CommandResult>,
) -> Result<(), CliError> {
    let result = result.unwrap_or_default();
    meta.conn.print(
        || json::command_response(&result),
        || human::command(&result, child_id),
    )
}

pub async fn restart(meta: &Meta, child_id: String) -> Result<(), CliError> {
    let mut client = meta.conn.connect().await?;
    let request = pb::RestartChildRequest {
        child_id,
        meta: command_meta(meta, false),
    };
    let response = client.control.restart_child(request).await?.into_inner();
    print(meta, None, response.result)
}

pub async fn pause(meta: &Meta, child_id: String) -> Result<(), CliError> {
    let mut client = meta.conn.connect().await?;
    let request = pb::PauseChildRequest {
        child_id,
        meta: command_meta(meta, false),
    };
    let response = client.control.pause_child(request).await?.into_inner();
    print(meta, None, response.result)
}

pub async fn resume(meta: &Meta, child_id: String) -> Result<(), CliError> {
    let mut client = meta.conn.connect().await?;
    let request = pb::ResumeChildRequest {
        child_id,
        meta: command_meta(meta, false),
    };
    let response = client.control.resume_child(request).await?.into_inner();
    print(meta, None, response.result)
}

pub async fn quarantine(meta: &Meta, child_id: String) -> Result<(), CliError> {
    let mut client = meta.conn.connect().await?;
    let request = pb::QuarantineChildRequest {
        child_id,
        meta: command_meta(meta, false),
    };
    let response = client.control.quarantine_child(request).await?.into_inner();
    print(meta, None, response.result)
}

pub async fn remove(meta: &Meta, child_id: String, yes: bool) -> Result<(), CliError> {
    confirmed(
        yes,
        format!("`sgw remove {child_id}` stops the child and forgets it"),
    )?;
    let mut client = meta.conn.connect().await?;
    let request = pb::RemoveChildRequest {
        child_id: child_id.clone(),
        meta: command_meta(meta, true),
    };
    let response = client.control.remove_child(request).await?.into_inner();
    print(meta, Some(&child_id), response.result)
}

/// Reads and checks FILE first (a bad file is exit 2 with its line), then
/// asks for `--yes`, then sends the spec.
pub async fn add(meta: &Meta, file: &Path, yes: bool) -> Result<(), CliError> {
    let spec = spec_file::load(file)?;
    confirmed(
        yes,
        format!(
            "{}: child {:?} is valid; `sgw add` starts `{}`",
            file.display(),
            spec.id.as_str(),
            spec.command.join(" ")
        ),
    )?;
    let mut client = meta.conn.connect().await?;
    let request = pb::AddChildRequest {
        spec: Some(pb::ChildSpec::from(&spec)),
        meta: command_meta(meta, true),
    };
    let response = client.control.add_child(request).await?.into_inner();
    print(meta, None, response.result)
}

pub async fn shutdown(meta: &Meta, yes: bool) -> Result<(), CliError> {
    confirmed(
        yes,
        "`sgw shutdown` stops every child and ends the server".to_owned(),
    )?;
    let mut client = meta.conn.connect().await?;
    let request = pb::ShutdownTreeRequest {
        meta: command_meta(meta, true),
    };
    let response = client.control.shutdown_tree(request).await?.into_inner();
    print(meta, None, response.result)
}

/// `sgw reload`: the server reads its config file again. Without `--yes`,
/// the plan is asked for first: one that removes children is printed and
/// refused (exit 2) before anything changes.
pub async fn reload(args: &ChangeArgs) -> Result<(), CliError> {
    let meta = &args.meta;
    let mut client = meta.conn.connect().await?;
    let ask = |dry_run: bool, confirm: bool| pb::ReloadConfigRequest {
        meta: command_meta(meta, confirm),
        dry_run,
    };
    if !args.dry_run && !args.yes {
        let plan = client
            .control
            .reload_config(ask(true, false))
            .await?
            .into_inner()
            .plan;
        refuse_removals(meta, "reload", plan.as_ref())?;
    }
    let response = client
        .control
        .reload_config(ask(args.dry_run, args.yes))
        .await?
        .into_inner();
    print_change(meta, "reload", response.plan, response.result)
}

/// `sgw scale ID N`: as many instances of group ID as N.
pub async fn scale(args: &ChangeArgs, child_id: String, instances: u32) -> Result<(), CliError> {
    let meta = &args.meta;
    let mut client = meta.conn.connect().await?;
    let ask = |dry_run: bool, confirm: bool| pb::ScaleChildRequest {
        child_id: child_id.clone(),
        instances,
        meta: command_meta(meta, confirm),
        dry_run,
    };
    if !args.dry_run && !args.yes {
        let plan = client
            .control
            .scale_child(ask(true, false))
            .await?
            .into_inner()
            .plan;
        refuse_removals(meta, "scale", plan.as_ref())?;
    }
    let response = client
        .control
        .scale_child(ask(args.dry_run, args.yes))
        .await?
        .into_inner();
    print_change(meta, "scale", response.plan, response.result)
}

/// A plan that removes children needs `--yes`: the plan is shown, and the
/// command is a usage error (exit 2) with nothing changed.
fn refuse_removals(meta: &Meta, what: &str, plan: Option<&pb::ChangePlan>) -> Result<(), CliError> {
    let Some(plan) = plan.filter(|p| !p.remove.is_empty()) else {
        return Ok(());
    };
    if !meta.conn.json {
        eprint!("{}", human::change_plan(what, plan));
    }
    Err(CliError::Usage(format!(
        "`sgw {what}` would stop and remove {}; pass --yes to confirm",
        plan.remove.join(", ")
    )))
}

fn print_change(
    meta: &Meta,
    what: &str,
    plan: Option<pb::ChangePlan>,
    result: Option<pb::CommandResult>,
) -> Result<(), CliError> {
    let plan = plan.unwrap_or_default();
    meta.conn.print(
        || json::change_response(&plan, result.as_ref()),
        || {
            let mut text = human::change_plan(what, &plan);
            match &result {
                Some(result) => text.push_str(&human::command(result, None)),
                None => text.push_str("dry run: nothing changed\n"),
            }
            text
        },
    )
}
