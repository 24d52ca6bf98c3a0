//! Progress bars for `bt net up`: one line for the ledger (height, elapsed time) and one bar
//! per neuron (steps, training loss, last held-out losses). Hidden when disabled or when
//! stderr is not a terminal; messages then go to stderr as plain lines.

use std::sync::Arc;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::up::Role;

/// The bars, cheap to clone (shared).
#[derive(Clone)]
pub struct Progress {
    inner: Arc<Inner>,
}

struct Inner {
    multi: MultiProgress,
    ledger: ProgressBar,
    neurons: Vec<ProgressBar>,
    visible: bool,
    /// Print plain lines when the bars are hidden because stderr is not a terminal.
    log: bool,
}

impl Progress {
    /// Bars for these neurons, each training up to `steps` steps; `enabled = false` hides
    /// them.
    pub fn new(roles: &[Role], steps: usize, enabled: bool) -> Progress {
        let multi = if enabled {
            MultiProgress::new()
        } else {
            MultiProgress::with_draw_target(ProgressDrawTarget::hidden())
        };
        let visible = enabled && !multi.is_hidden();
        let ledger = multi.add(ProgressBar::new_spinner());
        ledger.set_style(
            ProgressStyle::with_template("{spinner} ledger   [{elapsed_precise}] {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        ledger.set_message("starting");
        let style = ProgressStyle::with_template("{prefix:>9} {wide_bar} {pos:>5}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        let neurons = roles
            .iter()
            .map(|r| {
                let pb = multi.add(ProgressBar::new(steps as u64));
                pb.set_style(style.clone());
                pb.set_prefix(r.name.clone());
                pb
            })
            .collect();
        Progress {
            inner: Arc::new(Inner {
                multi,
                ledger,
                neurons,
                visible,
                log: enabled,
            }),
        }
    }

    /// Prints a line above the bars (or to stderr when they are hidden).
    pub fn println(&self, line: &str) {
        if self.inner.visible {
            let _ = self.inner.multi.println(line);
        } else if self.inner.log {
            eprintln!("{line}");
        }
    }

    /// The ledger reached `height`.
    pub fn height(&self, height: u64) {
        self.inner.ledger.set_message(format!("block {height}"));
        self.inner.ledger.tick();
    }

    /// Neuron `k` finished step `step` with training loss `loss`.
    pub fn step(&self, k: usize, step: usize, loss: f32) {
        if let Some(pb) = self.inner.neurons.get(k) {
            pb.set_position(step as u64);
            if step.is_multiple_of(5) {
                pb.set_message(format!("loss {loss:.3}"));
            }
        }
    }

    /// Neuron `k` ended an epoch at `step` with these held-out losses.
    pub fn epoch(&self, k: usize, step: usize, network: f32, alone: f32) {
        if let Some(pb) = self.inner.neurons.get(k) {
            let msg = format!("held-out {network:.3} (alone {alone:.3}) at {step}");
            if self.inner.visible {
                pb.set_message(msg);
            } else if self.inner.log {
                // No terminal: one plain line per epoch instead of a bar.
                eprintln!("{} {msg}", pb.prefix().trim());
            }
        }
    }

    /// Neuron `k` stopped after `steps` steps.
    pub fn done(&self, k: usize, steps: usize) {
        if let Some(pb) = self.inner.neurons.get(k) {
            pb.set_position(steps as u64);
            pb.abandon();
        }
    }

    /// Clears the bars.
    pub fn finish(&self) {
        self.inner.ledger.finish_and_clear();
    }
}
