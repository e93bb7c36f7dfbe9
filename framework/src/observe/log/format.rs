//! The plain-text line format, written for the hot path: the same layout as
//! `tracing-subscriber`'s default (`2026-12-02T20:21:51.408485Z  INFO span{a=1}: target:
//! message k=v`) without its colour machinery, which costs even when colours are off, and
//! with the date formatted once per second per thread.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats fields as `message k=v k2=v2`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Fields;

thread_local! {
    /// Where fields are formatted first, so a span's stored fields are one exact allocation
    /// instead of a string grown four or five times.
    static SCRATCH: RefCell<String> = const { RefCell::new(String::new()) };
}

impl<'w> FormatFields<'w> for Fields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut scratch) => {
                scratch.clear();
                record(&mut scratch, fields);
                writer.write_str(&scratch)
            }
            // Formatting a field logged something: a string of its own.
            Err(_) => {
                let mut own = String::new();
                record(&mut own, fields);
                writer.write_str(&own)
            }
        })
    }
}

fn record<R: RecordFields>(out: &mut String, fields: R) {
    fields.record(&mut Visitor { out, first: true });
}

/// Writes fields into a `String` directly (not through `fmt::Write`'s dynamic calls: a
/// field costs a few pushes).
struct Visitor<'a> {
    out: &'a mut String,
    first: bool,
}

impl Visitor<'_> {
    /// Writes the separator and `name=` (nothing for the message).
    fn key(&mut self, field: &Field) {
        if !std::mem::take(&mut self.first) {
            self.out.push(' ');
        }
        let name = field.name();
        if name == "message" {
            return;
        }
        self.out.push_str(name.strip_prefix("r#").unwrap_or(name));
        self.out.push('=');
    }
}

impl Visit for Visitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        self.out.push_str(value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        self.out.push_str(Digits::of(value).as_str());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        if value < 0 {
            self.out.push('-');
        }
        self.out.push_str(Digits::of(value.unsigned_abs()).as_str());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.key(field);
        // Writing into a `String` cannot fail; a `Debug` impl that fails leaves its part.
        let _ = write!(self.out, "{value:?}");
    }
}

/// A `u64` in decimal, on the stack (integers are on every access line: status, duration).
pub(crate) struct Digits {
    buf: [u8; 20],
    start: usize,
}

impl Digits {
    pub(crate) fn of(mut value: u64) -> Self {
        let mut buf = [0u8; 20];
        let mut start = buf.len();
        loop {
            start -= 1;
            buf[start] = b'0' + (value % 10) as u8;
            value /= 10;
            if value == 0 {
                break;
            }
        }
        Digits { buf, start }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII digits were written.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

/// The event line: timestamp, level, spans with their fields, target, fields.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Line;

impl<S, N> FormatEvent<S, N> for Line
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write_timestamp(&mut writer, SystemTime::now())?;
        let meta = event.metadata();
        writer.write_str(level(meta.level()))?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                writer.write_str(span.name())?;
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<N>>()
                    && !fields.is_empty()
                {
                    writer.write_char('{')?;
                    writer.write_str(fields)?;
                    writer.write_char('}')?;
                }
                writer.write_char(':')?;
            }
            writer.write_char(' ')?;
        }
        writer.write_str(meta.target())?;
        writer.write_str(": ")?;
        ctx.format_fields(writer.by_ref(), event)?;
        writer.write_char('\n')
    }
}

/// The level padded as the default format pads it, between single spaces.
fn level(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => " TRACE ",
        Level::DEBUG => " DEBUG ",
        Level::INFO => "  INFO ",
        Level::WARN => "  WARN ",
        Level::ERROR => " ERROR ",
    }
}

thread_local! {
    /// The second last formatted on this thread, and `YYYY-MM-DDTHH:MM:SS.` for it.
    static SECOND: RefCell<(u64, [u8; 20])> = const { RefCell::new((u64::MAX, [0; 20])) };
}

/// RFC 3339 in UTC with microseconds: `2026-12-02T20:21:51.408485Z`, in one write.
fn write_timestamp(writer: &mut Writer<'_>, now: SystemTime) -> fmt::Result {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let mut stamp = *b"1970-01-01T00:00:00.000000Z";
    SECOND.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            *cached = (secs, date_time(secs));
        }
        stamp[..20].copy_from_slice(&cached.1);
    });
    let mut us = since.subsec_micros();
    for digit in stamp[20..26].iter_mut().rev() {
        *digit = b'0' + (us % 10) as u8;
        us /= 10;
    }
    // ASCII digits and separators by construction.
    writer.write_str(std::str::from_utf8(&stamp).unwrap_or("1970-01-01T00:00:00.000000Z"))
}

/// `YYYY-MM-DDTHH:MM:SS.` for seconds since the epoch (Howard Hinnant's civil calendar).
fn date_time(secs: u64) -> [u8; 20] {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut out = *b"0000-00-00T00:00:00.";
    let mut put = |at: usize, width: usize, mut value: u64| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, year.clamp(0, 9999) as u64);
    put(5, 2, month as u64);
    put(8, 2, day as u64);
    put(11, 2, rem / 3600);
    put(14, 2, rem % 3600 / 60);
    put(17, 2, rem % 60);
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn stamp(secs: u64, micros: u32) -> String {
        let mut out = String::new();
        let at = UNIX_EPOCH + Duration::new(secs, micros * 1000);
        write_timestamp(&mut Writer::new(&mut out), at).unwrap();
        out
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_micros() {
        assert_eq!(stamp(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(stamp(951_782_400, 5), "2000-02-29T00:00:00.000005Z");
        assert_eq!(stamp(1_796_243_711, 408_485), "2026-12-02T20:35:11.408485Z");
        assert_eq!(stamp(4_102_444_799, 999_999), "2099-12-31T23:59:59.999999Z");
    }

    #[test]
    fn lines_have_the_default_layout_without_colours() {
        use tracing_subscriber::layer::SubscriberExt;

        let buf = super::super::Captured::default();
        let layer = tracing_subscriber::fmt::layer()
            .event_format(Line)
            .fmt_fields(Fields)
            .with_writer(buf.clone());
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", trace_id = %"abc", route = "/x");
            let _in = span.enter();
            tracing::info!(
                target: "truss::access",
                status = 200u16,
                r#type = "t",
                zero = 0u64,
                big = u64::MAX,
                neg = i64::MIN,
                "access"
            );
        });
        let text = buf.text();
        let line = text.lines().next().unwrap();
        assert_eq!(line.find("Z "), Some(26), "{line}");
        assert!(
            line.ends_with(
                "Z  INFO request{trace_id=abc route=/x}: truss::access: access status=200 type=t \
                 zero=0 big=18446744073709551615 neg=-9223372036854775808"
            ),
            "{line}"
        );
    }
}
