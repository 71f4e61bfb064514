//! Production orders at runtime (`/api/v1/orders`) through the real daemon: who
//! may issue and cancel them, how a bad order is refused, that the rules engine
//! judges an order as soon as it is issued (no restart), that orders survive a
//! restart with their cancellation, and that a config reload rebuilds the plan.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use common::daemon::Daemon;
use pollwatch::clock::SystemClock;
use pollwatch::sim::modbus::{serve_tcp, ModbusSim, Point};
use pollwatch::sim::profile::Profile;
use pollwatch::sources::modbus::decode::{DataType, WordOrder};
use pollwatch::sources::modbus::plan::RegisterKind;
use reqwest::StatusCode;
use serde_json::{json, Value};

use common::console::{OPERATOR, VIEWER};

/// A dyeing works whose production meter draws a steady 800 kW of a 1,000 kW
/// baseline, behind a Modbus TCP gateway polled every 200 ms.
fn enterprise(gw: std::net::SocketAddr, extra: &str) -> String {
    format!(
        "id = \"E2\"\nname = \"印染企业\"\ndistrict = \"吴中区\"\nindustry = \"印染\"\n\n\
         [[meters]]\nid = \"M1\"\nname = \"生产线\"\nrole = \"production\"\nbaseline_kw = 1000.0\n\n\
         [meters.device]\nprotocol = \"modbus\"\ntransport = \"tcp\"\naddress = \"{gw}\"\nunit = 1\n\
         interval = \"200ms\"\ntimeout = \"150ms\"\n\n\
         [[meters.device.points]]\nfactor = \"e_p\"\nregister = \"input\"\naddress = 52\ntype = \"f32\"\n\n{extra}"
    )
}

fn rfc3339(offset_s: i64) -> String {
    (Utc::now() + chrono::Duration::seconds(offset_s)).to_rfc3339_opts(SecondsFormat::Secs, true)
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

fn order(name: &str) -> Value {
    json!({
        "enterprise": "E2", "id": name, "kind": "limit",
        "start": rfc3339(-5), "end": rfc3339(3600),
        "allowed_share": 0.5, "grace": "1s",
        "reason": "橙色预警 重污染天气应急响应", "by": "zhangwei",
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_are_issued_judged_cancelled_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::hj212_config_with_tokens(dir.path());

    let sim = Arc::new(ModbusSim::new(Arc::new(SystemClock)));
    sim.add_unit(1);
    sim.set(
        1,
        RegisterKind::Input,
        52,
        Point::new(Profile::Constant(800.0), DataType::F32, WordOrder::ABCD),
    );
    let (_stop_sim, stop_sim_rx) = tokio::sync::watch::channel(false);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gw = listener.local_addr().unwrap();
    tokio::spawn(serve_tcp(listener, sim.clone(), stop_sim_rx));
    // A config order scheduled for tomorrow: listed, read-only.
    let tomorrow = format!(
        "[[orders]]\nid = \"cfg-tomorrow\"\nkind = \"stop\"\nstart = \"{}\"\nend = \"{}\"\n",
        rfc3339(86_400),
        rfc3339(2 * 86_400)
    );
    std::fs::write(cfg.join("enterprises/e2.toml"), enterprise(gw, &tomorrow)).unwrap();

    let mut daemon = Daemon::start(&cfg, None);
    let api = Api {
        base: format!("http://{}", daemon.field("http")),
        http: reqwest::Client::new(),
    };
    use reqwest::Method as M;

    // Who may do what.
    assert_eq!(
        api.send(M::GET, "/api/v1/orders", None, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (st, listed) = api.send(M::GET, "/api/v1/orders", Some(VIEWER), None).await;
    assert_eq!(st, StatusCode::OK);
    let listed = listed.as_array().unwrap().clone();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["source"], "config");
    assert_eq!(listed[0]["name"], "cfg-tomorrow");
    assert_eq!(listed[0]["state"], "scheduled");
    assert_eq!(
        api.send(M::POST, "/api/v1/orders", Some(VIEWER), Some(order("o1")))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        api.send(M::DELETE, "/api/v1/orders/1", Some(VIEWER), None)
            .await
            .0,
        StatusCode::FORBIDDEN
    );

    // A bad order: every problem named, nothing stored.
    let mut bad = order("o1");
    bad["meters"] = json!(["NOPE"]);
    bad["allowed_share"] = Value::Null;
    bad["grace"] = json!("soon");
    let (st, body) = api
        .send(M::POST, "/api/v1/orders", Some(OPERATOR), Some(bad))
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let problems = body["problems"].to_string();
    assert!(problems.contains("grace"), "{problems}");
    let mut bad = order("o1");
    bad["meters"] = json!(["NOPE"]);
    bad["allowed_share"] = Value::Null;
    let (st, body) = api
        .send(M::POST, "/api/v1/orders", Some(OPERATOR), Some(bad))
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let problems = body["problems"].to_string();
    assert!(
        problems.contains("meters[0]: no meter with id \\\"NOPE\\\""),
        "{problems}"
    );
    assert!(problems.contains("needs allowed_share"), "{problems}");
    let mut bad = order("o1");
    bad["enterprise"] = json!("E404");
    let (st, body) = api
        .send(M::POST, "/api/v1/orders", Some(OPERATOR), Some(bad))
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["error"].as_str().unwrap().contains("E404"), "{body}");
    let (st, body) = api
        .send(
            M::POST,
            "/api/v1/orders",
            Some(OPERATOR),
            Some(order("cfg-tomorrow")),
        )
        .await;
    assert_eq!(
        st,
        StatusCode::UNPROCESSABLE_ENTITY,
        "an id of a config order is taken: {body}"
    );

    // 800 kW has been drawn all along; without an order that is no violation.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !daemon.log().iter().any(|l| l.contains("order_violation")),
        "no order, no violation"
    );

    // The order is judged at once: 800 kW > 50 % of 1,000 kW for more than 1 s.
    let from = daemon.log_len();
    let (st, issued) = api
        .send(M::POST, "/api/v1/orders", Some(OPERATOR), Some(order("o1")))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{issued}");
    assert_eq!(issued["source"], "api");
    assert_eq!(issued["state"], "in_force");
    // The token issued it; the client's `by` is kept apart (issue 18).
    assert_eq!(issued["issued_by"], "desk");
    assert_eq!(issued["on_behalf_of"], "zhangwei");
    let id = issued["id"].as_i64().unwrap();
    let line = daemon
        .wait_for_log(from, "order_violation", Duration::from_secs(20))
        .unwrap_or_else(|| panic!("the new order was not judged:\n{}", daemon.log().join("\n")));
    assert!(line.contains("order o1"), "{line}");
    assert!(line.contains("allowed 500.0 kW"), "{line}");
    let (st, body) = api
        .send(M::POST, "/api/v1/orders", Some(OPERATOR), Some(order("o1")))
        .await;
    assert_eq!(
        st,
        StatusCode::UNPROCESSABLE_ENTITY,
        "o1 is in force: {body}"
    );

    // Cancel: once; the row stays.
    assert_eq!(
        api.send(M::DELETE, "/api/v1/orders/999", Some(OPERATOR), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let (st, body) = api
        .send(
            M::DELETE,
            "/api/v1/orders/cfg-tomorrow",
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("enterprises/e2.toml"),
        "{body}"
    );
    let (st, body) = api
        .send(
            M::DELETE,
            &format!("/api/v1/orders/{id}?by=lisi"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "cancelled");
    assert_eq!(body["cancelled"]["by"], "desk");
    assert_eq!(body["cancelled"]["on_behalf_of"], "lisi");
    assert_eq!(
        api.send(
            M::DELETE,
            &format!("/api/v1/orders/{id}"),
            Some(OPERATOR),
            None
        )
        .await
        .0,
        StatusCode::CONFLICT
    );

    // A restart keeps the order and its cancellation.
    daemon.terminate();
    let daemon = Daemon::start(&cfg, None);
    let api = Api {
        base: format!("http://{}", daemon.field("http")),
        http: reqwest::Client::new(),
    };
    let (_, current) = api.send(M::GET, "/api/v1/orders", Some(VIEWER), None).await;
    assert!(
        current
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["source"] == "config"),
        "{current}"
    );
    let (_, all) = api
        .send(
            M::GET,
            "/api/v1/orders?all=true&enterprise=E2",
            Some(VIEWER),
            None,
        )
        .await;
    let kept: Vec<&Value> = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["id"] == id)
        .collect();
    assert_eq!(kept.len(), 1, "{all}");
    assert_eq!(kept[0]["cancelled"]["by"], "desk");
    assert_eq!(kept[0]["cancelled"]["on_behalf_of"], "lisi");
    assert_eq!(kept[0]["reason"], "橙色预警 重污染天气应急响应");

    // A reload rebuilds the rules plan: a stop order written into the file now is
    // judged without a restart.
    let now_order = format!(
        "[[orders]]\nid = \"cfg-now\"\nkind = \"stop\"\nstart = \"{}\"\nend = \"{}\"\ngrace = \"1s\"\n",
        rfc3339(-5),
        rfc3339(3600)
    );
    std::fs::write(cfg.join("enterprises/e2.toml"), enterprise(gw, &now_order)).unwrap();
    let from = daemon.log_len();
    daemon.signal("HUP");
    let line = daemon
        .wait_for_log(from, "order cfg-now", Duration::from_secs(20))
        .unwrap_or_else(|| {
            panic!(
                "the reloaded order was not judged:\n{}",
                daemon.log().join("\n")
            )
        });
    assert!(line.contains("order_violation"), "{line}");
    assert!(daemon.log()[from..]
        .iter()
        .any(|l| l.contains("rules plan swapped")));
    let (_, metrics) = api.send(M::GET, "/metrics", Some(VIEWER), None).await;
    let metrics = metrics.as_str().unwrap_or_default().to_string();
    for line in [
        "pollwatch_rules_plan_swaps_total 1",
        "pollwatch_rules_replayed_enterprises_total 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} not in:\n{metrics}"
        );
    }
}
