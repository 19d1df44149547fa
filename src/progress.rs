//! Progress display: indicatif bars on a terminal, plain lines otherwise.

use std::{
    collections::HashMap,
    io::IsTerminal,
    sync::{Arc, Mutex},
};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use trousse_builder::progress::{Event, Reporter, Stage};

/// A bar's label: its stage, and whether it is conda's or PyPI's work.
fn labelled(stage: Stage, item: &str) -> String {
    let kind = if item.ends_with(".whl") {
        "pypi "
    } else if item.ends_with(".conda") || item.ends_with(".tar.bz2") {
        "conda "
    } else {
        ""
    };
    format!("{kind}{}", stage.name())
}

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
                    // a stage with no count (the solve) shows a spinner, not 0/0
                    let template = if *total == 0 {
                        "{prefix:>11} {spinner} {elapsed} {wide_msg}"
                    } else {
                        "{prefix:>11} [{bar:30}] {pos}/{len} {wide_msg}"
                    };
                    if let Ok(style) = ProgressStyle::with_template(template) {
                        bar.set_style(style.progress_chars("=> "));
                    }
                    if *total == 0 {
                        bar.enable_steady_tick(std::time::Duration::from_millis(120));
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
                        if bar.position() == 0 {
                            // conda packages and PyPI wheels go through the same stages: say which
                            bar.set_prefix(labelled(*stage, item));
                        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_say_whose_work_they_show() {
        assert_eq!(
            labelled(Stage::Stage, "six-1.16.0-py2.py3-none-any.whl"),
            "pypi stage"
        );
        assert_eq!(
            labelled(Stage::Fetch, "numpy-1.26.4-h0_0.conda"),
            "conda fetch"
        );
        assert_eq!(labelled(Stage::Layer, "the environment layer"), "layer");
    }
}
