//! Keys to actions, and the thread that reads the terminal. crossterm's
//! reader blocks, so it runs on its own thread and hands events to the
//! async loop through a channel (no extra async-stream feature needed).

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use tokio::sync::mpsc;

/// What a key asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Quit,
    Up,
    Down,
    /// A command for the selected child.
    Send(Command),
}

/// Which command a key sends to the selected child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Restart,
    Pause,
    Resume,
}

impl Command {
    pub fn verb(self) -> &'static str {
        match self {
            Command::Restart => "restart",
            Command::Pause => "pause",
            Command::Resume => "resume",
        }
    }
}

/// The footer's key help; kept next to the mapping it describes.
pub const HELP: &str = "↑/↓ j/k select   r restart   p pause   u resume   q/Esc/Ctrl-C quit";

pub fn action(key: KeyEvent) -> Option<Action> {
    // Terminals that report releases would otherwise act twice.
    if key.kind == KeyEventKind::Release {
        return None;
    }
    if key.modifiers.contains(KeyModifiers::CONTROL) {
        return matches!(key.code, KeyCode::Char('c' | 'C')).then_some(Action::Quit);
    }
    match key.code {
        KeyCode::Char('q') | KeyCode::Esc => Some(Action::Quit),
        KeyCode::Up | KeyCode::Char('k') => Some(Action::Up),
        KeyCode::Down | KeyCode::Char('j') => Some(Action::Down),
        KeyCode::Char('r') => Some(Action::Send(Command::Restart)),
        KeyCode::Char('p') => Some(Action::Send(Command::Pause)),
        KeyCode::Char('u') => Some(Action::Send(Command::Resume)),
        _ => None,
    }
}

/// What the reader thread hands over: a key, a resize (redraw), or the
/// end of input.
#[derive(Debug)]
pub enum Input {
    Key(KeyEvent),
    Resize,
    Closed(String),
}

/// Starts the reader thread. It ends when the receiver is dropped (at the
/// next event) or when reading fails; the process exiting ends it too.
pub fn spawn_reader() -> mpsc::Receiver<Input> {
    let (tx, rx) = mpsc::channel(64);
    let spawned = std::thread::Builder::new()
        .name("sgw-top-input".into())
        .spawn(move || {
            loop {
                let input = match event::read() {
                    Ok(Event::Key(key)) => Input::Key(key),
                    Ok(Event::Resize(..)) => Input::Resize,
                    Ok(_) => continue,
                    Err(error) => {
                        let _ = tx.blocking_send(Input::Closed(error.to_string()));
                        return;
                    }
                };
                if tx.blocking_send(input).is_err() {
                    return;
                }
            }
        });
    if let Err(error) = spawned {
        // The receiver then reports closed input and the dashboard ends.
        let (tx, rx) = mpsc::channel(1);
        let _ = tx.try_send(Input::Closed(error.to_string()));
        return rx;
    }
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, modifiers)
    }

    #[test]
    fn keys_map_to_actions() {
        let none = KeyModifiers::NONE;
        assert_eq!(action(key(KeyCode::Char('q'), none)), Some(Action::Quit));
        assert_eq!(action(key(KeyCode::Esc, none)), Some(Action::Quit));
        assert_eq!(
            action(key(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(Action::Quit)
        );
        assert_eq!(action(key(KeyCode::Char('j'), none)), Some(Action::Down));
        assert_eq!(action(key(KeyCode::Up, none)), Some(Action::Up));
        assert_eq!(
            action(key(KeyCode::Char('r'), none)),
            Some(Action::Send(Command::Restart))
        );
        assert_eq!(
            action(key(KeyCode::Char('p'), none)),
            Some(Action::Send(Command::Pause))
        );
        assert_eq!(
            action(key(KeyCode::Char('u'), none)),
            Some(Action::Send(Command::Resume))
        );
        // Ctrl-R is not a restart: only plain keys act on children.
        assert_eq!(action(key(KeyCode::Char('r'), KeyModifiers::CONTROL)), None);
        assert_eq!(action(key(KeyCode::Char('x'), none)), None);
    }

    #[test]
    fn releases_are_ignored() {
        let mut release = key(KeyCode::Char('p'), KeyModifiers::NONE);
        release.kind = KeyEventKind::Release;
        assert_eq!(action(release), None);
    }
}
