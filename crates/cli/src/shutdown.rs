//! Ctrl-C and SIGTERM as a value every part of a command can wait on.

use tokio::sync::watch;

/// Completes [`Shutdown::wait`] once Ctrl-C (SIGINT) or SIGTERM arrived. Cloning is cheap.
#[derive(Clone, Debug)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// Starts listening for Ctrl-C and SIGTERM now, so that a signal arriving before anyone
    /// waits is not lost. Must be called inside a tokio runtime.
    pub fn on_signals() -> anyhow::Result<Self> {
        let (tx, rx) = watch::channel(false);
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = signal(SignalKind::terminate())?;
            let mut interrupt = signal(SignalKind::interrupt())?;
            tokio::spawn(async move {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = interrupt.recv() => {}
                }
                let _ = tx.send(true);
            });
        }
        #[cfg(not(unix))]
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                let _ = tx.send(true);
            }
        });
        Ok(Shutdown(rx))
    }

    /// Completes once a signal has arrived (at once if one already has).
    pub async fn wait(&self) {
        let mut rx = self.0.clone();
        if rx.wait_for(|requested| *requested).await.is_err() {
            // The listener is gone without a signal: nothing will ever ask us to stop.
            std::future::pending::<()>().await;
        }
    }
}
