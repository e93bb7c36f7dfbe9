//! A [`pprof::Report`] as a flamegraph SVG (inferno, through pprof's `flamegraph` feature).

use std::fmt::Write as _;

use pprof::Report;
use pprof::flamegraph::{Options, from_lines};

/// The report as an interactive SVG flamegraph: one tower per thread, root at the bottom.
/// An idle process (no samples) gets a small SVG saying so.
pub(super) fn svg(report: &Report) -> Result<Vec<u8>, String> {
    let lines = folded(report);
    let samples: isize = report.data.values().sum();
    let seconds = report.timing.duration.as_secs_f64();
    let hz = report.timing.frequency;
    if lines.is_empty() {
        return Ok(empty(&format!(
            "No CPU samples in {seconds:.1} s at {hz} Hz: the process was idle."
        )));
    }
    let mut options = Options::default();
    options.title = "CPU flamegraph".to_owned();
    options.subtitle = Some(format!("{samples} samples in {seconds:.1} s at {hz} Hz"));
    let mut out = Vec::new();
    from_lines(&mut options, lines.iter().map(String::as_str), &mut out)
        .map_err(|e| format!("drawing the flamegraph: {e}"))?;
    Ok(out)
}

/// Brendan Gregg's folded format, `thread;root;...;leaf count`, one line per stack.
fn folded(report: &Report) -> Vec<String> {
    let mut lines: Vec<String> = report
        .data
        .iter()
        .filter(|(_, count)| **count > 0)
        .map(|(frames, count)| {
            let mut line = clean(&frames.thread_name_or_id());
            for symbols in frames.frames.iter().rev() {
                for symbol in symbols.iter().rev() {
                    line.push(';');
                    line.push_str(&clean(&symbol.name()));
                }
            }
            let _ = write!(line, " {count}");
            line
        })
        .collect();
    // inferno expects sorted input.
    lines.sort_unstable();
    lines
}

/// A frame name without the folded format's separators.
fn clean(name: &str) -> String {
    name.replace(';', ":").replace(['\n', '\r'], " ")
}

/// A minimal SVG carrying `message`.
fn empty(message: &str) -> Vec<u8> {
    let text = message
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    format!(
        "<?xml version=\"1.0\" standalone=\"no\"?>\n<svg version=\"1.1\" width=\"800\" \
         height=\"40\" xmlns=\"http://www.w3.org/2000/svg\"><text x=\"10\" y=\"25\" \
         font-family=\"Verdana\" font-size=\"14\">{text}</text></svg>\n"
    )
    .into_bytes()
}
