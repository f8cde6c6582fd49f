//! The bridge to asyncio: pyo3-async-runtimes' generic runtime interface, implemented over this
//! process's tokio runtime ([`super::process_runtime`]) rather than a runtime of its own, so
//! awaitables run where the blocking calls and the providers' connections do, and a forked
//! child that opens an engine gets a working runtime.

use std::future::Future;
use std::pin::Pin;

use pyo3_async_runtimes::TaskLocals;
use pyo3_async_runtimes::generic::{ContextExt, JoinError, Runtime};

tokio::task_local! {
    /// The asyncio event loop and context of the task that awaits the future.
    static TASK_LOCALS: TaskLocals;
}

/// Spawns on this process's runtime.
pub(crate) struct EngineRuntime;

/// A failed spawn or a task that did not finish.
pub(crate) struct EngineJoinError(Option<tokio::task::JoinError>);

impl JoinError for EngineJoinError {
    fn is_panic(&self) -> bool {
        self.0.as_ref().is_some_and(tokio::task::JoinError::is_panic)
    }

    fn into_panic(self) -> Box<dyn std::any::Any + Send + 'static> {
        match self.0 {
            Some(error) if error.is_panic() => error.into_panic(),
            _ => Box::new("the percolate runtime could not run the task"),
        }
    }
}

/// A spawned task.
pub(crate) type EngineJoinHandle =
    Pin<Box<dyn Future<Output = Result<(), EngineJoinError>> + Send + 'static>>;

impl Runtime for EngineRuntime {
    type JoinError = EngineJoinError;
    type JoinHandle = EngineJoinHandle;

    fn spawn<F>(future: F) -> Self::JoinHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        // Every awaitable comes from a session of this process, which made the runtime, so
        // this finds it; if it cannot be made, the task reports that instead of panicking.
        match super::process_runtime() {
            Ok(runtime) => {
                let task = runtime.spawn(future);
                Box::pin(async move { task.await.map_err(|e| EngineJoinError(Some(e))) })
            }
            Err(_) => Box::pin(async { Err(EngineJoinError(None)) }),
        }
    }

    fn spawn_blocking<F>(function: F) -> Self::JoinHandle
    where
        F: FnOnce() + Send + 'static,
    {
        match super::process_runtime() {
            Ok(runtime) => {
                let task = runtime.spawn_blocking(function);
                Box::pin(async move { task.await.map_err(|e| EngineJoinError(Some(e))) })
            }
            Err(_) => Box::pin(async { Err(EngineJoinError(None)) }),
        }
    }
}

impl ContextExt for EngineRuntime {
    fn scope<F, R>(locals: TaskLocals, future: F) -> Pin<Box<dyn Future<Output = R> + Send>>
    where
        F: Future<Output = R> + Send + 'static,
    {
        Box::pin(TASK_LOCALS.scope(locals, future))
    }

    fn get_task_locals() -> Option<TaskLocals> {
        TASK_LOCALS.try_with(Clone::clone).ok()
    }
}
