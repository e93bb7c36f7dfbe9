//! A non-blocking log writer: formatted lines go through a bounded queue to one writer
//! thread, so a request never waits on the stdout lock or on a slow pipe.
//!
//! * A full queue drops the line without blocking or allocating and counts it in
//!   `truss_log_dropped_total`.
//! * [`NonBlocking::flush`] waits until every line queued before it is written: the app calls
//!   it at the end of shutdown, so no line is lost.
//!
//! ```
//! use truss::observe::log::NonBlocking;
//!
//! let (writer, _thread) = NonBlocking::new(std::io::sink(), 1024);
//! let _ = tracing_subscriber::fmt().with_writer(writer.clone()).try_init();
//! tracing::info!("written by the writer thread");
//! assert!(writer.flush(std::time::Duration::from_secs(1)));
//! ```

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

enum Message {
    Line(Vec<u8>),
    Flush(mpsc::Sender<()>),
}

/// The writing side of the queue; cheap to clone. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct NonBlocking {
    tx: SyncSender<Message>,
    queued: Arc<AtomicUsize>,
    dropped: Arc<AtomicU64>,
    capacity: usize,
}

impl NonBlocking {
    /// Starts the writer thread over `out` with room for `capacity` lines.
    pub fn new(out: impl Write + Send + 'static, capacity: usize) -> (Self, JoinHandle<()>) {
        let capacity = capacity.max(1);
        // The channel holds one more slot than lines are admitted, for a flush marker.
        let (tx, rx) = mpsc::sync_channel(capacity + 1);
        let queued = Arc::new(AtomicUsize::new(0));
        let thread = {
            let queued = queued.clone();
            std::thread::Builder::new()
                .name("truss-log".to_owned())
                .spawn(move || write_lines(rx, out, &queued))
                .unwrap_or_else(|e| panic!("cannot start the log writer thread: {e}"))
        };
        let writer = Self {
            tx,
            queued,
            dropped: Arc::new(AtomicU64::new(0)),
            capacity,
        };
        (writer, thread)
    }

    /// Waits, at most `limit`, until every line queued before this call is written and
    /// flushed. Returns `false` when the time ran out or the writer thread is gone.
    pub fn flush(&self, limit: Duration) -> bool {
        let (ack_tx, ack_rx) = mpsc::channel();
        // Blocking send: a flush marker must not be dropped, and shutdown may wait.
        if self.tx.send(Message::Flush(ack_tx)).is_err() {
            return false;
        }
        ack_rx.recv_timeout(limit).is_ok()
    }

    /// Lines dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Queues one line; drops it (and counts it) when the queue is full.
    fn push(&self, line: &[u8]) {
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            self.drop_line();
            return;
        }
        if self.tx.try_send(Message::Line(line.to_vec())).is_err() {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            self.drop_line();
        }
    }

    fn drop_line(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("truss_log_dropped_total").increment(1);
    }
}

/// What `tracing-subscriber` writes one event through: the event arrives formatted, in one
/// `write` call, and is queued as one line.
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

/// The writer thread: writes lines as they come, flushes whenever the queue runs empty.
fn write_lines(rx: Receiver<Message>, out: impl Write, queued: &AtomicUsize) {
    let mut out = io::BufWriter::with_capacity(64 * 1024, out);
    let mut next = rx.recv();
    while let Ok(message) = next {
        match message {
            Message::Line(line) => {
                queued.fetch_sub(1, Ordering::AcqRel);
                let _ = out.write_all(&line);
            }
            Message::Flush(ack) => {
                let _ = out.flush();
                let _ = ack.send(());
            }
        }
        next = match rx.try_recv() {
            Ok(message) => Ok(message),
            Err(TryRecvError::Empty) => {
                let _ = out.flush();
                rx.recv().map_err(|_| TryRecvError::Disconnected)
            }
            Err(TryRecvError::Disconnected) => Err(TryRecvError::Disconnected),
        }
        .map_err(|_| mpsc::RecvError);
    }
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A sink tests can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn flush_writes_every_line_queued_before_it() {
        let sink = Shared::default();
        let (writer, _thread) = NonBlocking::new(sink.clone(), 100_000);
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
    }

    /// A writer that blocks until told to go on, to fill the queue deterministically.
    struct Gate(Arc<Mutex<()>>, Shared);

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
    fn a_full_queue_drops_lines_without_blocking() {
        let gate = Arc::new(Mutex::new(()));
        let sink = Shared::default();
        let closed = gate.lock().unwrap();
        let (writer, _thread) = NonBlocking::new(Gate(gate.clone(), sink.clone()), 4);
        // A line larger than the writer's buffer goes straight to the gate, where the writer
        // thread now waits holding it.
        let mut big = vec![b'x'; 128 * 1024];
        big.push(b'\n');
        writer.make_writer().write_all(&big).unwrap();
        while writer.queued.load(Ordering::Acquire) > 0 {
            std::thread::yield_now();
        }
        // Four more fit; the other 95 are dropped at once, without waiting for the gate.
        for i in 1..100 {
            writer
                .make_writer()
                .write_all(format!("{i}\n").as_bytes())
                .unwrap();
        }
        assert_eq!(writer.dropped(), 95);
        drop(closed);
        assert!(writer.flush(Duration::from_secs(10)));
        let written = sink
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|b| **b == b'\n')
            .count();
        assert_eq!(written, 5);
    }
}
