//! A [`pprof::Report`] as a pprof [`Profile`]: the string table, one `Function` per distinct
//! symbol, one `Location` per distinct stack frame (with its inlined functions as extra
//! lines), and one `Sample` per distinct stack and thread.

use std::collections::{BTreeMap, HashMap};
use std::time::UNIX_EPOCH;

use pprof::{Report, Symbol};

use super::proto::{Function, Label, Line, Location, Mapping, Profile, Sample, ValueType};

/// Nanoseconds in a second: the sampling period is `NANOS / frequency`.
const NANOS: i64 = 1_000_000_000;

/// `report` as a profile with two sample types, `samples`/`count` and `cpu`/`nanoseconds`
/// (the default), ready for `go tool pprof` or `pprof`.
pub(super) fn to_profile(report: &Report) -> Profile {
    let period = NANOS / i64::from(report.timing.frequency.max(1));
    let mut tables = Tables::default();
    let thread_key = tables.string("thread");
    let mut stacks: BTreeMap<(Vec<u64>, i64), i64> = BTreeMap::new();
    for (frames, count) in &report.data {
        let stack = frames
            .frames
            .iter()
            .map(|symbols| tables.location(symbols))
            .collect();
        let thread = tables.string(&frames.thread_name_or_id());
        let count = i64::try_from(*count).unwrap_or(0);
        *stacks.entry((stack, thread)).or_insert(0) += count;
    }
    let sample = stacks
        .into_iter()
        .map(|((location_id, thread), count)| Sample {
            location_id,
            value: vec![count, count.saturating_mul(period)],
            label: vec![Label {
                key: thread_key,
                str: thread,
                ..Label::default()
            }],
        })
        .collect();
    let samples = tables.value_type("samples", "count");
    let cpu = tables.value_type("cpu", "nanoseconds");
    let mapping = tables.main_binary();
    let default_sample_type = cpu.r#type;
    Profile {
        sample_type: vec![samples, cpu],
        sample,
        mapping: vec![mapping],
        location: tables.locations,
        function: tables.functions,
        string_table: tables.strings,
        time_nanos: nanos(report.timing.start_time.duration_since(UNIX_EPOCH).ok()),
        duration_nanos: nanos(Some(report.timing.duration)),
        period_type: Some(cpu),
        period,
        default_sample_type,
        ..Profile::default()
    }
}

fn nanos(d: Option<std::time::Duration>) -> i64 {
    d.map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// The tables of a profile being built, each deduplicated through a map to its index or id.
struct Tables {
    strings: Vec<String>,
    string_index: HashMap<String, i64>,
    functions: Vec<Function>,
    function_id: HashMap<(i64, i64, i64), u64>,
    locations: Vec<Location>,
    location_id: HashMap<Vec<(u64, i64)>, u64>,
}

impl Default for Tables {
    fn default() -> Self {
        // string_table[0] must be "".
        Self {
            strings: vec![String::new()],
            string_index: HashMap::from([(String::new(), 0)]),
            functions: Vec::new(),
            function_id: HashMap::new(),
            locations: Vec::new(),
            location_id: HashMap::new(),
        }
    }
}

impl Tables {
    /// The index of `s` in the string table, adding it when new.
    fn string(&mut self, s: &str) -> i64 {
        if let Some(&index) = self.string_index.get(s) {
            return index;
        }
        let index = i64::try_from(self.strings.len()).unwrap_or(i64::MAX);
        self.strings.push(s.to_owned());
        self.string_index.insert(s.to_owned(), index);
        index
    }

    fn value_type(&mut self, r#type: &str, unit: &str) -> ValueType {
        ValueType {
            r#type: self.string(r#type),
            unit: self.string(unit),
        }
    }

    /// The id of the function `symbol` names, adding it when new.
    fn function(&mut self, symbol: &Symbol) -> u64 {
        let name = self.string(&symbol.name());
        let system_name = self.string(&symbol.sys_name());
        let filename = match &symbol.filename {
            Some(path) => self.string(&path.to_string_lossy()),
            None => 0,
        };
        let key = (name, system_name, filename);
        if let Some(&id) = self.function_id.get(&key) {
            return id;
        }
        let id = self.functions.len() as u64 + 1;
        self.functions.push(Function {
            id,
            name,
            system_name,
            filename,
            start_line: 0,
        });
        self.function_id.insert(key, id);
        id
    }

    /// The id of the location of one stack frame, whose `symbols` are the functions inlined
    /// at it, innermost first, as pprof's `Location.line` lists them.
    fn location(&mut self, symbols: &[Symbol]) -> u64 {
        let lines: Vec<(u64, i64)> = symbols
            .iter()
            .map(|symbol| (self.function(symbol), i64::from(symbol.lineno.unwrap_or(0))))
            .collect();
        if let Some(&id) = self.location_id.get(&lines) {
            return id;
        }
        let id = self.locations.len() as u64 + 1;
        self.locations.push(Location {
            id,
            line: lines
                .iter()
                .map(|&(function_id, line)| Line { function_id, line })
                .collect(),
            ..Location::default()
        });
        self.location_id.insert(lines, id);
        id
    }

    /// The main binary, marked as already symbolized so that readers do not try to resolve
    /// the (address-less) locations again. Locations are not tied to it: frames from shared
    /// libraries are among them.
    fn main_binary(&mut self) -> Mapping {
        let exe = std::env::current_exe()
            .map(|path| path.to_string_lossy().into_owned())
            .unwrap_or_default();
        Mapping {
            id: 1,
            filename: self.string(&exe),
            has_functions: true,
            has_filenames: true,
            has_line_numbers: true,
            has_inline_frames: true,
            ..Mapping::default()
        }
    }
}
