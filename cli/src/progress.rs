//! Progress bars on stderr (indicatif), only when stderr is a terminal and not `--quiet`.

use std::io::IsTerminal;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use layercrypt_image::progress::{BlobProgress, Progress};

/// Bars for blob copies.
pub struct Bars {
    multi: MultiProgress,
}

impl Bars {
    /// Bars if stderr is a terminal and not quiet; `None` otherwise.
    pub fn new(quiet: bool) -> Option<Self> {
        if quiet || !std::io::stderr().is_terminal() {
            return None;
        }
        Some(Self {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
        })
    }
}

struct Bar(ProgressBar);

impl BlobProgress for Bar {
    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
    fn finish(&self) {
        self.0.finish();
    }
}

impl Progress for Bars {
    fn start(&self, label: &str, total: u64) -> Box<dyn BlobProgress> {
        let bar = self.multi.add(ProgressBar::new(total));
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:40!} [{bar:30}] {bytes:>10}/{total_bytes:<10} {binary_bytes_per_sec:>12} {eta:>4}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_message(label.to_owned());
        Box::new(Bar(bar))
    }
}
