//! Request-scoped values (the deadline, the trace's ids): a thread-local `Cell` that holds
//! the value while a request's `call`, or one poll of its future, runs, and then holds what
//! it held before again.
//!
//! This is what `tokio::task_local!` does, made cheaper for small `Copy` values. The value
//! is copied in and out, with no `RefCell` and no moves of the wrapped future. A `Cell` of
//! a `Copy` type has no destructor, so its thread-local is always there, even while a
//! thread shuts down.
//!
//! ```ignore
//! thread_local! {
//!     static CURRENT: Cell<Option<Deadline>> = const { Cell::new(None) };
//! }
//! let answer = local::enter(&CURRENT, deadline, || inner.call(req));
//! assert_eq!(local::get(&CURRENT), None);
//! ```

use std::cell::Cell;
use std::thread::LocalKey;

/// A thread-local slot for a request-scoped value.
pub(crate) type Key<T> = LocalKey<Cell<Option<T>>>;

/// Runs `f` with `value` in `key`, then puts back what was there before, even when `f`
/// panics.
#[inline]
pub(crate) fn enter<T: Copy + 'static, R>(
    key: &'static Key<T>,
    value: T,
    f: impl FnOnce() -> R,
) -> R {
    let _restore = Restore {
        key,
        outer: key.replace(Some(value)),
    };
    f()
}

/// The value in `key`: the innermost [`enter`] running on this thread, if any.
#[inline]
pub(crate) fn get<T: Copy + 'static>(key: &'static Key<T>) -> Option<T> {
    key.get()
}

/// Puts the outer value back when dropped.
struct Restore<T: Copy + 'static> {
    key: &'static Key<T>,
    outer: Option<T>,
}

impl<T: Copy + 'static> Drop for Restore<T> {
    #[inline]
    fn drop(&mut self) {
        self.key.set(self.outer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        static VALUE: Cell<Option<u32>> = const { Cell::new(None) };
    }

    #[test]
    fn nested_scopes_restore_the_outer_value() {
        assert_eq!(get(&VALUE), None);
        enter(&VALUE, 1, || {
            assert_eq!(get(&VALUE), Some(1));
            enter(&VALUE, 2, || assert_eq!(get(&VALUE), Some(2)));
            assert_eq!(get(&VALUE), Some(1));
        });
        assert_eq!(get(&VALUE), None);
    }

    #[test]
    fn a_panic_inside_restores_the_outer_value() {
        let caught = std::panic::catch_unwind(|| enter(&VALUE, 7, || panic!("inside")));
        assert!(caught.is_err());
        assert_eq!(get(&VALUE), None);
    }

    #[test]
    fn other_threads_do_not_see_it() {
        enter(&VALUE, 3, || {
            let seen = std::thread::spawn(|| get(&VALUE)).join().ok().flatten();
            assert_eq!(seen, None);
        });
    }
}
