//! A store's writer thread as its owner holds it: the thread reads its
//! messages in order, and a close sends one last message, waits for the
//! thread to acknowledge it (everything queued before is written) and
//! joins it. The event journal and the runtime intent both keep one.

use std::sync::mpsc::Sender;
use std::sync::{Mutex, PoisonError};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

pub(crate) struct WriterThread<M> {
    sender: Mutex<Option<Sender<M>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl<M: Send + 'static> WriterThread<M> {
    /// Runs `run` (which owns the receiving end of `sender`) on a thread
    /// named `name`.
    pub(crate) fn start(
        name: &str,
        sender: Sender<M>,
        run: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<Self> {
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(run)?;
        Ok(Self {
            sender: Mutex::new(Some(sender)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues a message; after close it is dropped.
    pub(crate) fn send(&self, message: M) {
        if let Some(sender) = &*self.sender.lock().unwrap_or_else(PoisonError::into_inner) {
            let _ = sender.send(message);
        }
    }

    /// Sends the message `last` makes from an acknowledgement, waits for
    /// it, and joins the thread. Later calls do nothing.
    pub(crate) async fn close(&self, last: impl FnOnce(oneshot::Sender<()>) -> M) {
        let sender = self
            .sender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(sender) = sender {
            let (done, closed) = oneshot::channel();
            if sender.send(last(done)).is_ok() {
                let _ = closed.await;
            }
        }
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}
