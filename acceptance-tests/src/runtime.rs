//! The process-wide pieces every test shares: one tokio runtime and one lock.
//!
//! Tests are plain `#[test]` functions. A single runtime (instead of one per `#[tokio::test]`) lets the
//! AWS SDK clients, whose connection pools belong to the runtime that opened them, be built once and
//! reused by every test in the binary.

use std::future::Future;
use std::sync::{LazyLock, Mutex, MutexGuard};

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("acc-tokio")
        .enable_all()
        .build()
        .expect("building the shared tokio runtime")
});

static SERIAL: Mutex<()> = Mutex::new(());

/// The runtime shared by every test in this process.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    &RUNTIME
}

/// Runs `future` to completion on the shared runtime, from synchronous test code.
pub fn block_on<F: Future>(future: F) -> F::Output {
    RUNTIME.block_on(future)
}

/// Takes the lock that serialises tests: they all share one emulator, which each one resets.
///
/// A test that panicked while holding the lock poisons it; the next test can still go ahead because it
/// resets the emulator before doing anything, so the poison carries no meaning here.
pub fn serialise() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
