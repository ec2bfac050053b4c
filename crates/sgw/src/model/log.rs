use super::ChildId;

/// Which pipe a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogStream {
    Stdout,
    Stderr,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }
}

/// One captured line of a child's output (without its newline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub child_id: ChildId,
    /// The process generation that wrote it.
    pub generation: u64,
    pub stream: LogStream,
    /// Invalid UTF-8 is replaced (lossy), never dropped.
    pub text: String,
    /// The line was longer than the capture limit and continues in the
    /// next record.
    pub truncated: bool,
}
