//! Which team and channels an alert goes to: the first `[[routes]]` entry whose
//! criteria all match (an empty list matches everything), Alertmanager-style, so a
//! catch-all route goes last.

use crate::config::{Route, Severity};

/// The alert's properties routes are matched on.
#[derive(Debug, Clone, Copy)]
pub struct RouteKey<'a> {
    pub district: &'a str,
    pub industry: &'a str,
    pub severity: Severity,
    pub rule: &'a str,
}

pub fn matches(route: &Route, k: &RouteKey<'_>) -> bool {
    (route.districts.is_empty() || route.districts.iter().any(|d| d == k.district))
        && (route.industries.is_empty() || route.industries.iter().any(|i| i == k.industry))
        && (route.severities.is_empty() || route.severities.contains(&k.severity))
        && (route.rules.is_empty() || route.rules.iter().any(|r| r == k.rule))
}

pub fn route<'r>(routes: &'r [Route], k: &RouteKey<'_>) -> Option<&'r Route> {
    routes.iter().find(|r| matches(r, k))
}
