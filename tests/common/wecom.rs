//! A WeCom-group-robot stand-in for alert tests: checks what WeCom checks (text
//! shape, the 2048-byte limit), records every request, answers like WeCom.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub type Seen = Arc<Mutex<Vec<serde_json::Value>>>;

/// Starts the receiver; returns the robot URL and what it received. With
/// `hang_first`, the first request is never answered (a test kills the daemon
/// while it waits).
pub async fn receiver(hang_first: bool) -> (String, Seen) {
    use axum::{routing::post, Json, Router};
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let app = Router::new().route(
        "/cgi-bin/webhook/send",
        post(move |Json(body): Json<serde_json::Value>| {
            let s = s.clone();
            async move {
                let content = body["text"]["content"].as_str().unwrap_or("");
                let ok = body["msgtype"] == "text" && !content.is_empty() && content.len() <= 2048;
                let n = {
                    let mut all = s.lock().unwrap();
                    all.push(body);
                    all.len()
                };
                if hang_first && n == 1 {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                Json(if ok {
                    serde_json::json!({"errcode": 0, "errmsg": "ok"})
                } else {
                    serde_json::json!({"errcode": 40008, "errmsg": "invalid message type"})
                })
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/cgi-bin/webhook/send?key=k"), seen)
}

/// Per alert link (`…/alerts/N`), how many accepted messages carried it.
pub type Links = Arc<Mutex<HashMap<String, usize>>>;

/// A robot that counts the alert links of the messages it answers; while
/// `hang` is set it accepts requests and never answers them.
pub async fn link_counter(hang: Arc<AtomicBool>) -> (String, Links) {
    use axum::{routing::post, Json, Router};
    let delivered: Links = Arc::default();
    let d = delivered.clone();
    let app = Router::new().route(
        "/cgi-bin/webhook/send",
        post(move |Json(body): Json<serde_json::Value>| {
            let (h, d) = (hang.clone(), d.clone());
            async move {
                if h.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                let text = body["text"]["content"].as_str().unwrap_or("").to_string();
                let mut all = d.lock().unwrap();
                for link in text.split_whitespace().filter(|w| w.contains("/alerts/")) {
                    *all.entry(link.to_string()).or_default() += 1;
                }
                Json(serde_json::json!({"errcode": 0, "errmsg": "ok"}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (
        format!("http://{addr}/cgi-bin/webhook/send?key=k"),
        delivered,
    )
}
