//! `GET /console/events`: server-sent events telling the board it changed.
//!
//! One poller ([`MarkFeed`]) looks at the store's [`BoardMark`] every [`POLL`]
//! while any stream is open; each stream sends a `board` event with the mark
//! when it differs from the last one it sent (the first is sent at once). The page knows the mark it was rendered with, so it
//! refetches only on a real change and a reconnect cannot miss one.
//!
//! Why poll the store rather than subscribe to the alert engine: alerts change
//! from three writers (the engine, the API, and `pollwatch alerts` on the command
//! line) and only the store sees them all; one aggregate query per second for
//! all open consoles together is nothing next to the readings the daemon writes. A stream ends
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

/// One poller for every open stream: the board's mark is read once a second
/// however many consoles are open, and only while at least one is. Started by
/// the first stream.
#[derive(Clone, Default)]
pub struct MarkFeed(std::sync::Arc<std::sync::OnceLock<watch::Receiver<Option<BoardMark>>>>);

impl MarkFeed {
    fn subscribe(
        &self,
        store: &Store,
        shutdown: &watch::Receiver<bool>,
    ) -> watch::Receiver<Option<BoardMark>> {
        let rx = self.0.get_or_init(|| {
            let (tx, rx) = watch::channel(None);
            tokio::spawn(poll(store.clone(), tx, shutdown.clone()));
            rx
        });
        rx.clone()
    }
}

async fn poll(
    store: Store,
    tx: watch::Sender<Option<BoardMark>>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        // The feed itself keeps one receiver; more means a stream is open.
        if tx.receiver_count() > 1 {
            match store.board_mark().await {
                Ok(m) => {
                    tx.send_if_modified(|cur| {
                        let changed = *cur != Some(m);
                        *cur = Some(m);
                        changed
                    });
                }
                // The streams stay; the next poll may succeed.
                Err(e) => tracing::warn!(error = %e, "board events: store failed"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

struct Feed {
    marks: watch::Receiver<Option<BoardMark>>,
    last: Option<BoardMark>,
    shutdown: watch::Receiver<bool>,
    until: tokio::time::Instant,
}

/// The next event, or `None` when the stream should end.
async fn next(mut f: Feed) -> Option<(Result<Event, Infallible>, Feed)> {
    loop {
        if *f.shutdown.borrow() || tokio::time::Instant::now() >= f.until {
            return None;
        }
        let current = *f.marks.borrow_and_update();
        if let Some(m) = current.filter(|m| f.last != Some(*m)) {
            f.last = Some(m);
            let ev = Event::default().event("board").data(mark_text(&m));
            return Some((Ok(ev), f));
        }
        tokio::select! {
            changed = f.marks.changed() => if changed.is_err() { return None },
            _ = f.shutdown.wait_for(|s| *s) => return None,
            _ = tokio::time::sleep_until(f.until) => return None,
        }
    }
}

fn feed(s: &ApiState) -> impl Stream<Item = Result<Event, Infallible>> {
    let f = Feed {
        marks: s.console.marks.subscribe(&s.store, &s.console.shutdown),
        last: None,
        shutdown: s.console.shutdown.clone(),
        until: tokio::time::Instant::now() + MAX_STREAM,
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
