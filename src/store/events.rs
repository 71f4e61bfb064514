//! Device events of one enterprise, newest first: what the console's enterprise
//! page lists of a logger's own reports (HJ 212-2025 hardware ids, key requests,
//! standard-sample checks). Served by the `device_status (enterprise, device, at)`
//! index; kept apart from the writer's status-event code, which only appends.

use sqlx::Row;

use super::{status_event, StatusEvent, Store, StoreError};

impl Store {
    /// Up to `limit` events of `enterprise` whose status is one of `statuses`.
    pub async fn device_events(
        &self,
        enterprise: &str,
        statuses: &[&str],
        limit: u32,
    ) -> Result<Vec<StatusEvent>, StoreError> {
        if statuses.is_empty() {
            return Ok(Vec::new());
        }
        on_pool!(self, |pool, Db| {
            let mut b = sqlx::QueryBuilder::<Db>::new(
                "SELECT at, enterprise, device, status, detail FROM device_status WHERE enterprise = ",
            );
            b.push_bind(enterprise);
            b.push(" AND status IN (");
            let mut list = b.separated(", ");
            for s in statuses {
                list.push_bind(*s);
            }
            b.push(") ORDER BY at DESC, id DESC LIMIT ")
                .push_bind(i64::from(limit));
            let rows = b
                .build()
                .fetch_all(pool)
                .await
                .map_err(StoreError::db("query device events"))?;
            rows.iter()
                .map(|r| status_event(r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
                .collect()
        })
    }
}
