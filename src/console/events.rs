//! `GET /console/events`: server-sent events telling the board it changed.
//!
//! Each stream looks at the store's [`BoardMark`] every [`POLL`] and sends a
//! `board` event with the mark when it differs from the last one sent (the
//! first is sent at once). The page knows the mark it was rendered with, so it
//! refetches only on a real change and a reconnect cannot miss one.
//!
//! Why poll the store rather than subscribe to the alert engine: alerts change
//! from three writers (the engine, the API, and `pollwatch alerts` on the command
//! line) and only the store sees them all; one aggregate query per second per
//! open console is nothing next to the readings the daemon writes. A stream ends
//! after [`MAX_STREAM`] (the browser reconnects and is authenticated afresh, so
//! a logged-out or removed token stops receiving) and at shutdown.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::stream::{self, Stream};
use tokio::sync::watch;

use crate::api::auth::Viewer;
use crate::api::ApiState;
use crate::store::{BoardMark, Store};

pub const POLL: Duration = Duration::from_secs(1);
pub const MAX_STREAM: Duration = Duration::from_secs(300);

pub fn routes() -> Router<ApiState> {
    Router::new().route("/console/events", get(events))
}

/// The mark as the page and the events carry it.
pub fn mark_text(m: &BoardMark) -> String {
    format!("{}-{}-{}", m.alerts, m.last_id, m.last_update_ms)
}

struct Feed {
    store: Store,
    last: Option<BoardMark>,
    shutdown: watch::Receiver<bool>,
    until: tokio::time::Instant,
    first: bool,
}

/// The next event, or `None` when the stream should end.
async fn next(mut f: Feed) -> Option<(Result<Event, Infallible>, Feed)> {
    loop {
        if !f.first {
            let tick = tokio::time::sleep(POLL);
            tokio::select! {
                _ = tick => {}
                _ = f.shutdown.wait_for(|s| *s) => return None,
            }
        }
        f.first = false;
        if *f.shutdown.borrow() || tokio::time::Instant::now() >= f.until {
            return None;
        }
        match f.store.board_mark().await {
            Ok(m) if f.last != Some(m) => {
                f.last = Some(m);
                let ev = Event::default().event("board").data(mark_text(&m));
                return Some((Ok(ev), f));
            }
            Ok(_) => {}
            // The stream stays; the next poll may succeed. The page keeps what it shows.
            Err(e) => tracing::warn!(error = %e, "board events: store failed"),
        }
    }
}

fn feed(s: &ApiState) -> impl Stream<Item = Result<Event, Infallible>> {
    let f = Feed {
        store: s.store.clone(),
        last: None,
        shutdown: s.console.shutdown.clone(),
        until: tokio::time::Instant::now() + MAX_STREAM,
        first: true,
    };
    stream::unfold(f, next)
}

async fn events(_: Viewer, State(s): State<ApiState>) -> Response {
    // nginx buffers proxied responses unless told not to; a buffered event
    // stream would hold a new alert back from the board.
    (
        [("x-accel-buffering", "no")],
        Sse::new(feed(&s)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))),
    )
        .into_response()
}
