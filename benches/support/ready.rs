//! Run a future that never waits (the keys are inline, so nothing is fetched): one poll, no
//! runtime. Shared by the benchmarks that call the authenticator.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

pub fn ready<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("authenticate waited: the keys should be inline"),
    }
}
