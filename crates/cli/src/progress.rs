//! Progress of long work (`localnet up`, `demo`, `reshare`) on standard error, so that
//! standard output keeps only results. On a terminal: a spinner showing the step under way
//! (a bar while counting towards a total), with the lines that stay printed above it. When
//! standard error is not a terminal (logs, CI, tests): plain lines, one per line that stays
//! and one per change of a count, never a spinner or a control character.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often the spinner moves.
const TICK: Duration = Duration::from_millis(120);
const SPINNER: &str = "{spinner} {msg} ({elapsed})";
const BAR: &str = "{spinner} {msg} [{bar:24}] {pos}/{len} ({elapsed})";

/// Where progress goes: a spinner on a terminal, or plain lines. Dropping it clears the
/// spinner.
pub struct Progress {
    sink: Sink,
}

enum Sink {
    Terminal(ProgressBar),
    Lines(Mutex<Lines>),
}

/// Plain lines, and the last count printed (a count is printed only when it changes).
struct Lines {
    out: Box<dyn Write + Send>,
    last_count: Option<(String, u64, u64)>,
}

impl Progress {
    /// Progress on standard error: a spinner if it is a terminal, plain lines otherwise.
    pub fn on_stderr() -> Progress {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(style(SPINNER));
            bar.set_message("starting");
            bar.enable_steady_tick(TICK);
            Progress {
                sink: Sink::Terminal(bar),
            }
        } else {
            Progress::lines(Box::new(std::io::stderr()))
        }
    }

    /// Progress as plain lines written to `out`.
    pub fn lines(out: Box<dyn Write + Send>) -> Progress {
        Progress {
            sink: Sink::Lines(Mutex::new(Lines {
                out,
                last_count: None,
            })),
        }
    }

    /// The step under way, shown beside the spinner. Plain output prints nothing for it: the
    /// step's outcome is a [`line`](Self::line).
    pub fn step(&self, message: impl Into<String>) {
        if let Sink::Terminal(bar) = &self.sink {
            bar.set_style(style(SPINNER));
            bar.unset_length();
            bar.reset_elapsed();
            bar.set_message(message.into());
        }
    }

    /// A line that stays: above the spinner on a terminal, a plain line otherwise.
    pub fn line(&self, text: impl AsRef<str>) {
        match &self.sink {
            Sink::Terminal(bar) => bar.println(text),
            Sink::Lines(lines) => {
                let mut lines = lines.lock().unwrap_or_else(|p| p.into_inner());
                // Progress is best effort: a closed standard error must not fail the work.
                let _ = writeln!(lines.out, "{}", text.as_ref());
            }
        }
    }

    /// `done` of `total` so far, of `what`: a bar on a terminal; otherwise the line
    /// `what: done/total`, printed only when it differs from the last count printed.
    pub fn count(&self, what: &str, done: u64, total: u64) {
        match &self.sink {
            Sink::Terminal(bar) => {
                if bar.length() != Some(total) {
                    bar.set_style(style(BAR));
                    bar.set_length(total);
                }
                bar.set_message(what.to_owned());
                bar.set_position(done);
            }
            Sink::Lines(lines) => {
                let mut lines = lines.lock().unwrap_or_else(|p| p.into_inner());
                let count = (what.to_owned(), done, total);
                if lines.last_count.as_ref() != Some(&count) {
                    let _ = writeln!(lines.out, "{what}: {done}/{total}");
                    lines.last_count = Some(count);
                }
            }
        }
    }

    /// Clears the spinner, before results are printed on standard output.
    pub fn finish(&self) {
        if let Sink::Terminal(bar) = &self.sink {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The style of `template`; the default spinner if the template were wrong.
fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_spinner())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A `Write` whose bytes the test reads back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    #[test]
    fn plain_progress_is_one_line_per_outcome_and_per_changed_count() {
        let captured = Captured::default();
        let progress = Progress::lines(Box::new(captured.clone()));
        progress.step("preparing");
        progress.line("prepared");
        for connected in [0, 0, 1, 1, 1, 3] {
            progress.count("nodes connected", connected, 3);
        }
        progress.count("keys made", 1, 3);
        progress.step("finishing");
        progress.finish();
        drop(progress);
        assert_eq!(
            captured.text(),
            "prepared\nnodes connected: 0/3\nnodes connected: 1/3\nnodes connected: 3/3\nkeys made: 1/3\n"
        );
    }

    #[test]
    fn the_templates_are_valid() {
        for template in [SPINNER, BAR] {
            assert!(ProgressStyle::with_template(template).is_ok(), "{template}");
        }
    }
}
