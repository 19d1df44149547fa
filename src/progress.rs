//! Progress display: indicatif bars on a terminal, plain lines otherwise.

use std::{
    collections::HashMap,
    io::IsTerminal,
    sync::{Arc, Mutex},
};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use trousse_builder::progress::{Event, Reporter, Stage};

/// A reporter for the terminal; quiet about per-item progress when `quiet`.
pub fn reporter(quiet: bool) -> Reporter {
    if std::io::stderr().is_terminal() && !quiet {
        let multi = MultiProgress::new();
        let bars: Mutex<HashMap<Stage, ProgressBar>> = Mutex::new(HashMap::new());
        Arc::new(move |event: &Event| {
            let Ok(mut bars) = bars.lock() else { return };
            match event {
                Event::StageStarted { stage, total } => {
                    let bar = multi.add(ProgressBar::new(*total));
                    if let Ok(style) = ProgressStyle::with_template(
                        "{prefix:>8} [{bar:30}] {pos}/{len} {wide_msg}",
                    ) {
                        bar.set_style(style.progress_chars("=> "));
                    }
                    bar.set_prefix(stage.name());
                    bars.insert(*stage, bar);
                }
                Event::Progress {
                    stage,
                    item,
                    cached,
                } => {
                    if let Some(bar) = bars.get(stage) {
                        bar.inc(1);
                        bar.set_message(format!(
                            "{item}{}",
                            if *cached { " (cached)" } else { "" }
                        ));
                    }
                }
                Event::StageFinished { stage, seconds } => {
                    if let Some(bar) = bars.get(stage) {
                        bar.finish_with_message(format!("done in {seconds:.2}s"));
                    }
                }
            }
        })
    } else {
        Arc::new(move |event: &Event| {
            if let Event::StageFinished { stage, seconds } = event {
                if !quiet {
                    eprintln!("{}: done in {seconds:.2}s", stage.name());
                }
            }
        })
    }
}
