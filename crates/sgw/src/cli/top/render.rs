//! Drawing the dashboard: a header, the children table, the events and
//! log panes side by side, and a footer with the last command's outcome
//! and the keys. Cells reuse the `sgw state` words (`running`, `1.2s`,
//! `12.3M`) so the two read alike.

use std::time::{Duration, SystemTime};

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, TableState};

use super::app::{App, Link};
use super::input::HELP;
use crate::cli::client::human;
use crate::pb;

pub fn draw(frame: &mut Frame, app: &App, now: SystemTime) {
    // Rows for every child plus the header row and borders, but leave the
    // panes below at least a few lines.
    let table_height = u16::try_from(app.children.len())
        .unwrap_or(u16::MAX)
        .saturating_add(3)
        .clamp(4, frame.area().height.saturating_sub(10).max(4));
    let [header, table, panes, status, keys] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(table_height),
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(header_line(app), header);
    draw_table(frame, table, app, now);
    let [events, logs] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(panes);
    draw_events(frame, events, app);
    draw_logs(frame, logs, app);
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled("status: ", Style::new().add_modifier(Modifier::BOLD)),
            Span::raw(app.status.as_str()),
        ])),
        status,
    );
    frame.render_widget(
        Paragraph::new(HELP).style(Style::new().fg(Color::DarkGray)),
        keys,
    );
}

fn header_line(app: &App) -> Paragraph<'_> {
    let link = match &app.link {
        Link::Connected => Span::styled("connected", Style::new().fg(Color::Green)),
        Link::Disconnected(why) => Span::styled(
            format!("disconnected, reconnecting: {why}"),
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        ),
    };
    Paragraph::new(Line::from(vec![
        Span::styled("sgw top", Style::new().add_modifier(Modifier::BOLD)),
        Span::raw(format!("  {}  ", app.socket)),
        link,
        Span::raw(format!(
            "  {} children  event #{}",
            app.children.len(),
            app.last_event_sequence
        )),
    ]))
}

fn draw_table(frame: &mut Frame, area: Rect, app: &App, now: SystemTime) {
    let header = Row::new([
        "ID", "STATE", "PID", "GEN", "UPTIME", "RESTARTS", "CPU", "MEM", "DETAIL",
    ])
    .style(Style::new().add_modifier(Modifier::BOLD));
    let rows = app.children.iter().map(|child| {
        let state = human::state_name(child.state);
        let (cpu, mem) = human::usage_cells(child.usage.as_ref());
        Row::new([
            Cell::from(child.child_id.as_str()),
            Cell::from(Span::styled(state, state_style(child.state))),
            Cell::from(child.pid.map_or_else(|| "-".to_owned(), |p| p.to_string())),
            Cell::from(child.generation.to_string()),
            Cell::from(uptime(child, now)),
            Cell::from(child.restart_count.to_string()),
            Cell::from(cpu),
            Cell::from(mem),
            Cell::from(human::detail(child, Some(&now.into()))),
        ])
    });
    let widths = [
        Constraint::Max(20),
        Constraint::Length(11),
        Constraint::Length(8),
        Constraint::Length(5),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Fill(1),
    ];
    let table = Table::new(rows, widths)
        .header(header)
        .block(Block::new().borders(Borders::ALL).title(" children "))
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .highlight_symbol("> ");
    let mut state = TableState::new().with_selected(app.selected_index());
    frame.render_stateful_widget(table, area, &mut state);
}

/// The colour says at a glance whether a child needs an operator.
fn state_style(raw: i32) -> Style {
    let color = match pb::ChildState::try_from(raw) {
        Ok(pb::ChildState::Running) => Color::Green,
        Ok(pb::ChildState::Starting | pb::ChildState::Stopping) => Color::Cyan,
        Ok(pb::ChildState::Backoff | pb::ChildState::Blocked) => Color::Yellow,
        Ok(pb::ChildState::Paused) => Color::Blue,
        Ok(pb::ChildState::Quarantined) => Color::Red,
        Ok(pb::ChildState::Stopped | pb::ChildState::Unspecified) | Err(_) => Color::DarkGray,
    };
    Style::new().fg(color)
}

/// How long the current process has been in its state (`-` without one).
fn uptime(child: &pb::ChildRecord, now: SystemTime) -> String {
    let since = child
        .since
        .and_then(|t| SystemTime::try_from(t).ok())
        .filter(|_| child.pid.is_some());
    match since {
        Some(since) => human::duration(Duration::from_secs(
            now.duration_since(since).unwrap_or_default().as_secs(),
        )),
        None => "-".to_owned(),
    }
}

/// `12:00:03`: the time of day (UTC) is enough on a live view.
fn clock(t: Option<&prost_types::Timestamp>) -> String {
    t.and_then(|t| SystemTime::try_from(*t).ok())
        .map(|t| humantime::format_rfc3339_seconds(t).to_string())
        .and_then(|text| text.get(11..19).map(str::to_owned))
        .unwrap_or_else(|| "--:--:--".to_owned())
}

fn severity_style(raw: i32) -> Style {
    match pb::Severity::try_from(raw) {
        Ok(pb::Severity::Warning) => Style::new().fg(Color::Yellow),
        Ok(pb::Severity::Error) => Style::new().fg(Color::Red),
        _ => Style::new(),
    }
}

/// The newest lines that fit `area` inside its borders.
fn newest<T>(items: impl DoubleEndedIterator<Item = T>, area: Rect) -> Vec<T> {
    let fit = usize::from(area.height.saturating_sub(2));
    let mut lines: Vec<T> = items.rev().take(fit).collect();
    lines.reverse();
    lines
}

fn draw_events(frame: &mut Frame, area: Rect, app: &App) {
    let lines = newest(app.events.iter(), area)
        .into_iter()
        .map(|event| {
            let child = if event.child_id.is_empty() {
                "-"
            } else {
                &event.child_id
            };
            let detail = event
                .detail
                .as_ref()
                .map(human::describe)
                .unwrap_or_default();
            Line::from(vec![
                Span::styled(clock(event.time.as_ref()), Style::new().fg(Color::DarkGray)),
                Span::raw(format!(" {child:<12} ")),
                Span::styled(
                    format!("{:<18} ", human::event_type_name(event.event_type)),
                    severity_style(event.severity),
                ),
                Span::raw(detail),
            ])
        })
        .collect::<Vec<_>>();
    let block = Block::new().borders(Borders::ALL).title(" events ");
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn draw_logs(frame: &mut Frame, area: Rect, app: &App) {
    let lines = newest(app.logs.iter(), area)
        .into_iter()
        .map(|line| {
            let (stream, stream_style) = match pb::LogStream::try_from(line.stream) {
                Ok(pb::LogStream::Stderr) => ("err", Style::new().fg(Color::Yellow)),
                _ => ("out", Style::new().fg(Color::DarkGray)),
            };
            Line::from(vec![
                Span::styled(clock(line.time.as_ref()), Style::new().fg(Color::DarkGray)),
                Span::styled(format!(" {stream} "), stream_style),
                Span::raw(line.text.as_str()),
            ])
        })
        .collect::<Vec<_>>();
    let title = match &app.selected {
        Some(id) => format!(" log: {id} "),
        None => " log ".to_owned(),
    };
    let block = Block::new().borders(Borders::ALL).title(title);
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    /// The whole screen as text, as `tmux capture-pane` would show it.
    fn screen(app: &App) -> String {
        let mut terminal = Terminal::new(TestBackend::new(120, 30)).expect("test terminal");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        terminal.draw(|frame| draw(frame, app, now)).expect("draw");
        let buffer = terminal.backend().buffer();
        let mut text = String::new();
        for y in 0..buffer.area.height {
            for x in 0..buffer.area.width {
                text.push_str(buffer[(x, y)].symbol());
            }
            text.push('\n');
        }
        text
    }

    /// Every column of a child's row is drawn, uptime counted from when
    /// it entered its state, the detail as `sgw state` words it (backoff
    /// countdown, sd_notify status), and the selected child names the log
    /// pane.
    #[test]
    fn rows_show_the_record() {
        let record = pb::ChildRecord {
            child_id: "web".into(),
            state: pb::ChildState::Running.into(),
            pid: Some(4242),
            generation: 3,
            restart_count: 2,
            since: Some(prost_types::Timestamp {
                seconds: 1_000 - 75,
                nanos: 0,
            }),
            usage: Some(pb::ResourceUsage {
                cpu_time: Some(prost_types::Duration {
                    seconds: 1,
                    nanos: 500_000_000,
                }),
                memory_bytes: 3 * 1024 * 1024,
                processes: 1,
                oom_kills: None,
            }),
            ..Default::default()
        };
        let waiting = pb::ChildRecord {
            child_id: "db".into(),
            state: pb::ChildState::Backoff.into(),
            backoff_until: Some(prost_types::Timestamp {
                seconds: 1_005,
                nanos: 0,
            }),
            ..Default::default()
        };
        let notifying = pb::ChildRecord {
            child_id: "cache".into(),
            state: pb::ChildState::Starting.into(),
            status_text: "warming up".into(),
            ..Default::default()
        };
        let app = App::new(
            "/run/sgw.sock".into(),
            pb::GetStateResponse {
                children: vec![record, waiting, notifying],
                last_event_sequence: 7,
                ..Default::default()
            },
        );
        let text = screen(&app);
        let row = text
            .lines()
            .find(|l| l.contains("web") && l.contains("running"))
            .unwrap_or_else(|| panic!("no row for web:\n{text}"));
        let cells: Vec<&str> = row
            .split_whitespace()
            .map(|c| c.trim_matches(|c| c == '│' || c == '>'))
            .filter(|c| !c.is_empty())
            .collect();
        assert_eq!(
            cells,
            ["web", "running", "4242", "3", "1m15s", "2", "1.5s", "3M"],
            "{text}"
        );
        let row = |id: &str| {
            text.lines()
                .find(|l| l.contains(&format!(" {id} ")))
                .unwrap_or_default()
                .to_owned()
        };
        assert!(row("db").contains("restart in 5s"), "{text}");
        assert!(row("cache").contains("warming up"), "{text}");
        assert!(text.contains("log: web"), "{text}");
        assert!(text.contains("connected"), "{text}");
        assert!(text.contains("event #7"), "{text}");
    }

    /// A lost connection is said in the header, not hidden.
    #[test]
    fn disconnection_is_shown() {
        let mut app = App::new("/s".into(), pb::GetStateResponse::default());
        app.link = Link::Disconnected("no socket".into());
        let text = screen(&app);
        assert!(
            text.contains("disconnected, reconnecting: no socket"),
            "{text}"
        );
    }
}
