//! Processors: `do-nothing-processor`.

use std::collections::BTreeMap;

use super::{check_keys, PipeEvent};

/// A processor: turns events into events.
pub trait Processor: Send {
    /// Processes one event, appending what goes on to `out`.
    fn process(&mut self, event: PipeEvent, out: &mut Vec<PipeEvent>);
}

/// `do-nothing-processor`: passes every event on unchanged.
#[derive(Debug, Default)]
pub struct DoNothingProcessor;

impl Processor for DoNothingProcessor {
    fn process(&mut self, event: PipeEvent, out: &mut Vec<PipeEvent>) {
        out.push(event);
    }
}

/// Builds the processor named in `attrs`, filling in the default.
///
/// # Errors
/// An unknown plugin or key.
pub fn processor(attrs: &mut BTreeMap<String, String>) -> Result<Box<dyn Processor>, String> {
    let name = attrs
        .entry("processor".into())
        .or_insert_with(|| "do-nothing-processor".into())
        .to_ascii_lowercase();
    check_keys("processor", attrs, &["processor"])?;
    match name.as_str() {
        "do-nothing-processor" => Ok(Box::new(DoNothingProcessor)),
        other => Err(format!(
            "unknown processor plugin '{other}'; the built-in one is do-nothing-processor"
        )),
    }
}
