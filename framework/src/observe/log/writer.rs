//! A non-blocking log writer: formatted lines are appended to a shared buffer, and one writer
//! thread takes the whole buffer every few milliseconds and writes it at once. A request
//! never waits on the stdout lock, a slow pipe or a system call for its log line.
//!
//! * Appending is a copy under an uncontended lock: no allocation, no wake-up per line (the
//!   writer thread is woken early only when the buffer is half full).
//! * A full buffer drops the line without blocking and counts it in
//!   `truss_log_dropped_total`.
//! * [`NonBlocking::flush`] waits until every line appended before it is written: the app
//!   calls it at the end of shutdown, so no line is lost.
//!
//! ```
//! use truss::observe::log::NonBlocking;
//!
//! let (writer, _thread) = NonBlocking::new(std::io::sink(), 1 << 20);
//! let _ = tracing_subscriber::fmt().with_writer(writer.clone()).try_init();
//! tracing::info!("written by the writer thread");
//! assert!(writer.flush(std::time::Duration::from_secs(1)));
//! ```

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use tracing_subscriber::fmt::MakeWriter;

/// How long the writer thread sleeps between two writes when nobody wakes it.
const PERIOD: Duration = Duration::from_millis(5);

/// The writing side; cheap to clone. See [`observe::log`](crate::observe::log).
#[derive(Clone, Debug)]
pub struct NonBlocking {
    shared: Arc<Shared>,
    thread: Thread,
}

#[derive(Debug)]
struct Shared {
    buffer: Mutex<Vec<u8>>,
    capacity: usize,
    woken: AtomicBool,
    dropped: AtomicU64,
    /// Flushes asked for, and flushes done (each a running count).
    requested: AtomicU64,
    done: Mutex<u64>,
    done_changed: Condvar,
}

impl NonBlocking {
    /// Starts the writer thread over `out`, buffering at most `capacity` bytes of lines.
    pub fn new(out: impl Write + Send + 'static, capacity: usize) -> (Self, JoinHandle<()>) {
        let capacity = capacity.max(1);
        let shared = Arc::new(Shared {
            buffer: Mutex::new(Vec::with_capacity(capacity.min(1 << 20))),
            capacity,
            woken: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            requested: AtomicU64::new(0),
            done: Mutex::new(0),
            done_changed: Condvar::new(),
        });
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("truss-log".to_owned())
                .spawn(move || write_lines(&shared, out))
                .unwrap_or_else(|e| panic!("cannot start the log writer thread: {e}"))
        };
        let writer = Self {
            shared,
            thread: thread.thread().clone(),
        };
        (writer, thread)
    }

    /// Waits, at most `limit`, until every line appended before this call is written and
    /// flushed. Returns `false` when the time ran out.
    pub fn flush(&self, limit: Duration) -> bool {
        let want = self.shared.requested.fetch_add(1, Ordering::AcqRel) + 1;
        self.thread.unpark();
        let deadline = Instant::now() + limit;
        let mut done = self
            .shared
            .done
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while *done < want {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            done = self
                .shared
                .done_changed
                .wait_timeout(done, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    /// Lines dropped so far because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Appends one line; drops it (and counts it) when the buffer is full.
    fn push(&self, line: &[u8]) {
        let half_full = {
            let mut buffer = self
                .shared
                .buffer
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if buffer.len() + line.len() > self.shared.capacity {
                drop(buffer);
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("truss_log_dropped_total").increment(1);
                return;
            }
            buffer.extend_from_slice(line);
            buffer.len() > self.shared.capacity / 2
        };
        if half_full && !self.shared.woken.swap(true, Ordering::AcqRel) {
            self.thread.unpark();
        }
    }
}

/// What `tracing-subscriber` writes one event through: the event arrives formatted, in one
/// `write` call, and is appended as one line.
#[derive(Debug)]
pub struct LineWriter<'a> {
    queue: &'a NonBlocking,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.queue.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for NonBlocking {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter { queue: self }
    }
}

/// The writer thread: every [`PERIOD`] (or when woken), takes the buffer and writes it.
fn write_lines(shared: &Arc<Shared>, mut out: impl Write) {
    let mut spare = Vec::new();
    loop {
        std::thread::park_timeout(PERIOD);
        shared.woken.store(false, Ordering::Release);
        // Every writer gone: after this last write nothing more can come.
        let last = Arc::strong_count(shared) == 1;
        let want = shared.requested.load(Ordering::Acquire);
        {
            let mut buffer = shared.buffer.lock().unwrap_or_else(PoisonError::into_inner);
            std::mem::swap(&mut *buffer, &mut spare);
        }
        if !spare.is_empty() {
            let _ = out.write_all(&spare);
            let _ = out.flush();
            spare.clear();
        }
        let mut done = shared.done.lock().unwrap_or_else(PoisonError::into_inner);
        if *done < want {
            *done = want;
            shared.done_changed.notify_all();
        }
        if last {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink tests can read back.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn lines(sink: &Sink) -> usize {
        sink.0
            .lock()
            .unwrap()
            .iter()
            .filter(|b| **b == b'\n')
            .count()
    }

    #[test]
    fn flush_writes_every_line_appended_before_it() {
        let sink = Sink::default();
        let (writer, _thread) = NonBlocking::new(sink.clone(), 1 << 20);
        for i in 0..10_000 {
            writer
                .make_writer()
                .write_all(format!("line {i}\n").as_bytes())
                .unwrap();
        }
        assert!(writer.flush(Duration::from_secs(10)));
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 10_000);
        assert!(text.ends_with("line 9999\n"));
        assert_eq!(writer.dropped(), 0);
    }

    /// A writer that blocks until told to go on, to fill the buffer deterministically.
    struct Gate(Arc<Mutex<()>>, Sink);

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let _open = self.0.lock().unwrap();
            self.1.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_full_buffer_drops_lines_without_blocking() {
        let gate = Arc::new(Mutex::new(()));
        let sink = Sink::default();
        let closed = gate.lock().unwrap();
        let (writer, _thread) = NonBlocking::new(Gate(gate.clone(), sink.clone()), 100);
        writer.make_writer().write_all(b"0\n").unwrap();
        // Wait until the writer thread took that line and is stuck at the gate.
        while !writer.shared.buffer.lock().unwrap().is_empty() {
            std::thread::sleep(Duration::from_millis(1));
        }
        // 100 bytes hold lines 1..=36 ("1\n".."9\n", then "10\n".."36\n"); the other 63 are
        // dropped at once, without waiting for the gate.
        for i in 1..100 {
            writer
                .make_writer()
                .write_all(format!("{i}\n").as_bytes())
                .unwrap();
        }
        assert_eq!(writer.dropped(), 63);
        drop(closed);
        assert!(writer.flush(Duration::from_secs(10)));
        assert_eq!(lines(&sink), 37);
    }
}
