//! The duty officers' web console, served by the daemon on the HTTP API's
//! listener (merged into [`crate::api::router`]).
//!
//! | route | who | what |
//! |---|---|---|
//! | `GET /login`, `POST /login`, `POST /logout` | anyone / session | [`login`] with an API token |
//! | `GET /` | session | the alert board ([`board`]) |
//! | `GET /console/board?…` | viewer | the board's table alone, for its live refresh |
//! | `GET /overview`, `GET /console/overview` | session | the city at a glance, viewers' landing page, and its live fragment ([`overview`]) |
//! | `GET /reports` | session | the monthly report, month picker, xlsx download ([`reports`]) |
//! | `GET /console/events` | viewer | server-sent events: the board changed ([`events`]) |
//! | `GET /alerts/{id}` | session | one alert: message, timeline, notifications, chart ([`detail`]) |
//! | `POST /alerts/{id}/act` | operator session + CSRF field | acknowledge or resolve from that page |
//! | `GET /enterprises`, `GET /enterprises/{id}` | session | outlets, meters, this hour, orders ([`enterprises`]) |
//! | `GET /console/console.js`, `/console/console.css` | anyone | the committed assets ([`assets`]) |
//!
//! Why server-rendered HTML with a small script: officers open the console on
//! whatever intranet PC is at the desk; pages that are complete without script
//! load fast and cannot break on a bundler. The script only adds what needs it:
//! the live board (an `EventSource` on [`events`]) and the board's
//! acknowledge/resolve buttons, which call the JSON API
//! (`/api/v1/alerts/{id}/ack|resolve`) with the session cookie and the CSRF
//! header ([`session`]). The alert page's form is a plain form post with the
//! CSRF token in a hidden field. Everything a page shows is
//! escaped ([`html`]).

pub mod assets;
pub mod board;
pub mod detail;
pub mod enterprise_completeness;
pub mod enterprises;
pub mod events;
pub mod hour;
pub mod html;
pub mod labels;
pub mod login;
pub mod overview;
pub mod reports;
pub mod session;
pub mod trend;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Router;
use tokio::sync::watch;

use crate::api::ApiState;
pub use session::{Session, Sessions};

/// What the console keeps beside the API's state.
#[derive(Clone)]
pub struct ConsoleState {
    pub sessions: Sessions,
    /// Turns true at shutdown; ends the event streams so the server can stop.
    pub shutdown: watch::Receiver<bool>,
    /// Which notification channels cannot send (the banner on every page).
    pub channels: crate::notify::HealthBoard,
    /// The board's change mark, polled once for every open event stream.
    pub marks: events::MarkFeed,
}

impl ConsoleState {
    pub fn new(
        shutdown: watch::Receiver<bool>,
        channels: crate::notify::HealthBoard,
    ) -> ConsoleState {
        ConsoleState {
            sessions: Sessions::default(),
            shutdown,
            channels,
            marks: Default::default(),
        }
    }
}

pub fn routes() -> Router<ApiState> {
    Router::new()
        .merge(login::routes())
        .merge(board::routes())
        .merge(events::routes())
        .merge(detail::routes())
        .merge(enterprises::routes())
        .merge(reports::routes())
        .merge(overview::routes())
        .merge(assets::routes())
}

/// A page request from a logged-in browser; without a live session the browser
/// is sent to the login page.
pub struct Officer(pub Session);

impl FromRequestParts<ApiState> for Officer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Response> {
        let tokens = state.tokens.borrow().clone();
        let found = match session::cookie(&parts.headers) {
            Some(id) => {
                state
                    .console
                    .sessions
                    .lookup(id, &tokens, state.clock.now())
                    .await
            }
            None => None,
        };
        found
            .map(Officer)
            .ok_or_else(|| Redirect::to("/login").into_response())
    }
}
