//! The thread a query endpoint (HTTP or Postgres) runs on: its listener, a small runtime of
//! its own (queries never run on a stream thread), and a stop signal.
//!
//! 1. [`ServerThread::spawn`] binds the address (port 0 picks one) before returning, so a
//!    bad address is an error at once and [`ServerThread::local_addr`] is known.
//! 2. The endpoint's future runs on two runtime threads until the stop signal fires.
//! 3. Dropping the handle fires the signal and waits for the thread.

use std::future::Future;
use std::net::SocketAddr;

use tokio::sync::oneshot;

use crate::error::{EngineError, Result};

/// A running endpoint's thread.
#[derive(Debug)]
pub(crate) struct ServerThread {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerThread {
    /// Listens on `listen` and runs `serve(listener, stopped)` on a thread named `name`;
    /// errors name the setting `key`.
    pub fn spawn<F, Fut>(name: &str, key: &str, listen: SocketAddr, serve: F) -> Result<Self>
    where
        F: FnOnce(tokio::net::TcpListener, oneshot::Receiver<()>) -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        let config_error = |reason: String| EngineError::Config {
            key: key.to_string(),
            reason,
        };
        let listener = std::net::TcpListener::bind(listen)
            .map_err(|e| config_error(format!("cannot listen on {listen}: {e}")))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| config_error(e.to_string()))?;
        let addr = listener
            .local_addr()
            .map_err(|e| config_error(e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(name)
            .enable_all()
            .build()
            .map_err(|e| config_error(format!("cannot start the query runtime: {e}")))?;
        let (stop, stopped) = oneshot::channel::<()>();
        let label = name.to_string();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                runtime.block_on(async move {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => serve(listener, stopped).await,
                        Err(e) => tracing::error!("{label}: {e}"),
                    }
                });
            })
            .map_err(|e| config_error(e.to_string()))?;
        Ok(Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
