//! `/reports`: the monthly report on screen — pick a month, read the report (the
//! same page `pollwatch report monthly` writes), download the workbook or print.
//! The downloads are the API's (`/api/v1/reports/monthly`), which accepts the
//! console's session.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use chrono::{Datelike, Months};

use super::{html, Officer};
use crate::api::report_monthly::MonthlyQuery;
use crate::api::ApiState;
use crate::report::{self, ReportError};

pub fn routes() -> Router<ApiState> {
    Router::new().route("/reports", get(page))
}

async fn page(
    Officer(who): Officer,
    State(s): State<ApiState>,
    Query(q): Query<MonthlyQuery>,
) -> Response {
    let cfg = s.config.borrow().clone();
    let now = s.clock.now().with_timezone(&cfg.timezone);
    // Default: the last complete month.
    let month = q.month.unwrap_or_else(|| {
        let last = now.date_naive().with_day(1).unwrap_or(now.date_naive()) - Months::new(1);
        format!("{:04}-{:02}", last.year(), last.month())
    });
    let r = match report::monthly(&s.store, &cfg, &month, s.clock.now()).await {
        Ok(r) => r,
        Err(ReportError::Month(m)) => {
            return html::problem(
                StatusCode::BAD_REQUEST,
                Some(&who),
                &format!("月份 {m:?} 无效，应为 YYYY-MM。"),
            )
        }
        Err(e) => return html::store_down(&who, "monthly report", &e),
    };
    let m = html::Esc(&month);
    let body = format!(
        r#"<h1>月报</h1><form class="month-picker" method="get" action="/reports"><label>月份 <input type="month" name="month" value="{m}" required></label><button type="submit">查看</button><a class="button" id="xlsx" href="/api/v1/reports/monthly?month={m}&amp;format=xlsx">下载 xlsx</a><a class="button" id="printable" href="/api/v1/reports/monthly?month={m}&amp;format=html" target="_blank" rel="noopener">打印版</a></form>{}"#,
        report::html::page(&r, false)
    );
    html::page("月报", Some(&who), &body)
}
