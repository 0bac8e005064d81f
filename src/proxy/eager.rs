//! Store calls made from places that cannot wait (a `Drop`, a stream's end): run to the end at
//! once when they finish without waiting, as the in-process backends always do (so the next
//! request sees their effect), or else handed to the runtime.

use std::future::Future;

pub fn run_now_or_spawn(work: impl Future<Output = ()> + Send + 'static) {
    let mut work = Box::pin(work);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    if work.as_mut().poll(&mut cx).is_pending() {
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(work);
            }
            Err(_) => tracing::error!("a store call could not finish: no runtime to run it on"),
        }
    }
}
