//! The rules plan has two inputs: the config (changed by reloads) and the
//! production orders officers issue at runtime (`/api/v1/orders`). [`PlanFeed`]
//! holds both and publishes a freshly compiled plan whenever either changes; the
//! rules task swaps it in, keeping the state of every enterprise it did not touch.
//!
//! Its lock also serialises order changes: validating an order against the
//! orders in force, storing it and publishing the plan happen as one step, so two
//! officers issuing orders at once cannot both take the same id.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use tokio::sync::{watch, Mutex, MutexGuard};

use crate::config::Config;
use crate::rules::Plan;
use crate::store::{Store, StoreError, StoredOrder};

/// Orders that ended longer ago than this no longer shape any verdict the rules
/// can still reach (a replay covers at most the current day), so they stay in the
/// store but out of the plan.
pub const ORDERS_LOOKBACK: Duration = Duration::days(2);

pub struct Inputs {
    pub config: Arc<Config>,
    pub orders: Vec<StoredOrder>,
}

/// Cheap to clone; shared by the reload loop and the orders API.
#[derive(Clone)]
pub struct PlanFeed {
    inputs: Arc<Mutex<Inputs>>,
    tx: Arc<watch::Sender<Arc<Plan>>>,
}

impl PlanFeed {
    /// The feed and the receiver for the rules task, with the orders in the store.
    pub async fn start(
        config: Arc<Config>,
        store: &Store,
        now: DateTime<Utc>,
    ) -> Result<(PlanFeed, watch::Receiver<Arc<Plan>>), StoreError> {
        let orders = store.orders(Some(now - ORDERS_LOOKBACK)).await?;
        if !orders.is_empty() {
            tracing::info!(orders = orders.len(), "runtime production orders loaded");
        }
        let (tx, rx) = watch::channel(Arc::new(Plan::with_orders(&config, &orders)));
        Ok((
            PlanFeed {
                inputs: Arc::new(Mutex::new(Inputs { config, orders })),
                tx: Arc::new(tx),
            },
            rx,
        ))
    }

    /// Another receiver of the plan (a cluster leader's rules task, one per term).
    pub fn subscribe(&self) -> watch::Receiver<Arc<Plan>> {
        self.tx.subscribe()
    }

    /// A reload succeeded.
    pub async fn set_config(&self, config: Arc<Config>) {
        let mut inputs = self.inputs.lock().await;
        inputs.config = config;
        self.publish(&inputs);
    }

    /// Holds the inputs while an order is checked and stored; call
    /// [`PlanFeed::publish_orders`] before letting go.
    pub async fn lock(&self) -> MutexGuard<'_, Inputs> {
        self.inputs.lock().await
    }

    /// Takes the orders in force from the store again and publishes the plan.
    pub async fn publish_orders(
        &self,
        inputs: &mut Inputs,
        store: &Store,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        inputs.orders = store.orders(Some(now - ORDERS_LOOKBACK)).await?;
        self.publish(inputs);
        Ok(())
    }

    /// Cluster mode: an order issued through another node's API is stored there
    /// and published to that node's plan only; every `every`, this node reads
    /// the orders from the store and publishes its plan when they changed, so
    /// the leader judges an order issued anywhere within `every`.
    pub async fn follow_orders(
        self,
        store: Store,
        clock: Arc<dyn crate::clock::Clock>,
        every: std::time::Duration,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                () = tokio::time::sleep(every) => {}
            }
            let fresh = match store.orders(Some(clock.now() - ORDERS_LOOKBACK)).await {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(error = %e, "orders: cannot read the store; tried again next period");
                    continue;
                }
            };
            let mut inputs = self.inputs.lock().await;
            if inputs.orders != fresh {
                tracing::info!(
                    orders = fresh.len(),
                    "production orders changed in the store (another node)"
                );
                inputs.orders = fresh;
                self.publish(&inputs);
            }
        }
    }

    fn publish(&self, inputs: &Inputs) {
        let plan = Plan::with_orders(&inputs.config, &inputs.orders);
        // No receiver only means the rules task has stopped (shutdown).
        let _ = self.tx.send(Arc::new(plan));
    }
}
