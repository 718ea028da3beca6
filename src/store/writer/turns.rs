//! Whose turn it is to commit.
//!
//! One batch commits at a time, on one connection (the [`Engine`]); the
//! turn to run it passes between the writer's thread and the HTTP workers.
//! Handing every request to a thread of its own cost, per batch, a wake of
//! that thread (a context switch and, on a virtual machine, an exit to the
//! host), then a wake of the worker for the answer. So on SQLite (with
//! `synchronous = NORMAL`, where a commit does not wait for the disk) the
//! worker that queues a request when nobody has the turn takes it: it lets
//! the other requests it has read in the same round join the queue, then
//! commits the batch on its own thread and gives the turn up. Requests
//! queued meanwhile (by the other worker) are committed by the writer's
//! thread, which keeps the turn until the queue is empty: under a steady
//! load the thread commits, and a worker only when the writer was idle.
//!
//! Requests from elsewhere (background tasks, `Drop`), and every request
//! on PostgreSQL or with `synchronous = FULL` (a commit that waits for the
//! network or the disk must not stop an HTTP worker), go to the thread.
//!
//! The turn is taken and given up under one small lock ([`Gate`]), and a
//! taker looks at the queue under it before giving the turn up: a request
//! queued while someone had the turn is always committed by someone.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::batch::{Engine, Waiting};

pub(super) struct Turns {
    gate: Mutex<Gate>,
    /// The writer's thread waits here for a turn handed to it, or the end.
    thread: Condvar,
    /// [`Turns::hold`] waits here for the turn to be free.
    free: Condvar,
    engine: Mutex<Engine>,
    /// Whether an HTTP worker may commit on its own thread.
    inline: bool,
}

#[derive(Default)]
struct Gate {
    /// Someone has the turn: a worker, the thread, or a holder.
    taken: bool,
    /// The turn was handed to the thread, which has not taken it up yet.
    for_thread: bool,
    /// Every `Writer` is gone: the thread commits what is left and ends.
    closed: bool,
    /// How many [`Turns::hold`] calls wait for the turn.
    holders: usize,
}

/// A worker's turn: [`Turn::commit`] uses it; dropped unused (the request
/// gave up while it let others join), it goes to the thread.
pub(super) struct Turn {
    turns: Arc<Turns>,
    used: bool,
}

type Locked<'a, T> = Result<MutexGuard<'a, T>, std::sync::PoisonError<MutexGuard<'a, T>>>;

fn unpoisoned<T>(lock: Locked<'_, T>) -> MutexGuard<'_, T> {
    // A panic while holding either lock leaves plain data behind: go on.
    lock.unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Turns {
    pub(super) fn new(engine: Engine, inline: bool) -> Turns {
        Turns {
            gate: Mutex::new(Gate::default()),
            thread: Condvar::new(),
            free: Condvar::new(),
            engine: Mutex::new(engine),
            inline,
        }
    }

    fn gate(&self) -> MutexGuard<'_, Gate> {
        unpoisoned(self.gate.lock())
    }

    fn engine(&self) -> MutexGuard<'_, Engine> {
        unpoisoned(self.engine.lock())
    }

    /// After a request was queued: takes the turn if nobody has it. A
    /// worker that may commit gets it; otherwise it goes to the thread.
    /// `None` when someone else has it: they commit the request.
    pub(super) fn claim(self: &Arc<Self>, on_worker: bool) -> Option<Turn> {
        let mut gate = self.gate();
        if gate.taken || gate.holders > 0 {
            return None;
        }
        gate.taken = true;
        if on_worker && self.inline {
            return Some(Turn {
                turns: Arc::clone(self),
                used: false,
            });
        }
        self.to_thread(&mut gate);
        None
    }

    fn to_thread(&self, gate: &mut Gate) {
        gate.for_thread = true;
        self.thread.notify_one();
    }

    /// Gives the turn up after a batch, the engine still held so that the
    /// queue cannot be read wrong: free when nothing waits (or a holder
    /// does), else kept (`keep`, the thread) or handed to the thread.
    /// Returns whether the caller keeps it.
    fn pass(&self, engine: &Engine, keep: bool) -> bool {
        let mut gate = self.gate();
        if gate.holders > 0 {
            // The holder takes it, and hands it to the thread after.
            gate.taken = false;
            self.free.notify_all();
            return false;
        }
        if engine.idle() {
            gate.taken = false;
            if gate.closed {
                // The thread waits for the turn to finish.
                self.thread.notify_one();
            }
            return false;
        }
        if !keep {
            self.to_thread(&mut gate);
        }
        keep
    }

    /// The writer's thread: commits whenever the turn is handed to it,
    /// until the queue is empty; ends once every `Writer` is gone, after
    /// what was queued.
    pub(super) fn serve(&self) {
        loop {
            let closing = {
                let mut gate = self.gate();
                loop {
                    if gate.for_thread {
                        gate.for_thread = false;
                        break false;
                    }
                    if gate.closed && !gate.taken {
                        gate.taken = true;
                        break true;
                    }
                    gate = unpoisoned(self.thread.wait(gate));
                }
            };
            let mut engine = self.engine();
            if closing {
                while engine.commit_waiting(true) == Waiting::Batch {}
                let mut gate = self.gate();
                gate.taken = false;
                self.free.notify_all();
                tracing::debug!("writer stopped");
                return;
            }
            loop {
                engine.commit_waiting(true);
                if !self.pass(&engine, true) {
                    break;
                }
            }
        }
    }

    /// Every `Writer` is gone: the thread finishes.
    pub(super) fn close(&self) {
        let mut gate = self.gate();
        gate.closed = true;
        self.thread.notify_one();
    }

    /// Runs `f` while no batch runs: waits for the one under way, and keeps
    /// new ones from starting until `f` returns (the WAL's restart
    /// checkpoint, which would otherwise keep a batch waiting on SQLite's
    /// lock, and on a worker keep that worker waiting).
    pub(super) fn hold<R>(&self, f: impl FnOnce() -> R) -> R {
        {
            let mut gate = self.gate();
            gate.holders += 1;
            while gate.taken {
                gate = unpoisoned(self.free.wait(gate));
            }
            gate.holders -= 1;
            gate.taken = true;
        }
        struct Release<'a>(&'a Turns);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                let engine = self.0.engine();
                self.0.pass(&engine, false);
            }
        }
        let _release = Release(self);
        f()
    }
}

impl Turn {
    /// Commits what is queued, this worker's request among it, on this
    /// thread; then gives the turn up (to the thread if more was queued).
    pub(super) fn commit(mut self) {
        let turns = Arc::clone(&self.turns);
        let mut engine = turns.engine();
        // Another process holding SQLite's lock: the thread waits for it,
        // not this worker (`Waiting::Busy` leaves the queue to the thread).
        engine.commit_waiting(false);
        turns.pass(&engine, false);
        self.used = true;
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if !self.used {
            // Unused, or a batch that panicked: the thread carries on.
            let mut gate = self.turns.gate();
            self.turns.to_thread(&mut gate);
        }
    }
}
