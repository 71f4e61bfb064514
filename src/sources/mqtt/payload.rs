//! JSON payloads to readings. The documented default shape:
//!
//! ```json
//! {"ts": "2026-11-27T08:00:00+08:00", "values": {"e_p": 12.5, "e_ep": 3021.7}, "flags": {"e_p": "N"}}
//! ```
//!
//! `ts` may also be epoch milliseconds. Other gateways' shapes are mapped with
//! `ts_field`, `values_field`, `flags_field` (dotted paths) and `factor_map`
//! (gateway name → factor code). A value that is not a number is reported and the
//! others are kept.

use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;

use crate::config::MqttSubscription;
use crate::model::{factor, DataKind, Flag, Id, Location, Protocol, Reading, SourceRef, Stat};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("payload is not JSON: {0}")]
    NotJson(String),
    #[error("no timestamp at {0:?}")]
    NoTimestamp(String),
    #[error("timestamp {0} is neither RFC 3339 nor epoch milliseconds")]
    BadTimestamp(String),
    #[error("no object of values at {0:?}")]
    NoValues(String),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    pub readings: Vec<Reading>,
    /// `factor: reason` for values that could not be used.
    pub problems: Vec<String>,
}

fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

fn timestamp(v: &Value) -> Option<DateTime<Utc>> {
    match v {
        Value::String(s) => DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.with_timezone(&Utc)),
        Value::Number(n) => n
            .as_i64()
            .and_then(|ms| Utc.timestamp_millis_opt(ms).single()),
        _ => None,
    }
}

/// Readings of `location` from one JSON message.
pub fn parse_json(
    payload: &[u8],
    sub: &MqttSubscription,
    enterprise: &Id,
    location: &Location,
    device: &Id,
) -> Result<Parsed, PayloadError> {
    let doc: Value =
        serde_json::from_slice(payload).map_err(|e| PayloadError::NotJson(e.to_string()))?;
    let ts_v =
        at(&doc, &sub.ts_field).ok_or_else(|| PayloadError::NoTimestamp(sub.ts_field.clone()))?;
    let ts = timestamp(ts_v).ok_or_else(|| PayloadError::BadTimestamp(ts_v.to_string()))?;
    let values = at(&doc, &sub.values_field)
        .and_then(Value::as_object)
        .ok_or_else(|| PayloadError::NoValues(sub.values_field.clone()))?;
    let flags = at(&doc, &sub.flags_field).and_then(Value::as_object);
    let mut out = Parsed::default();
    for (name, v) in values {
        let code = sub
            .factor_map
            .get(name)
            .map_or(name.as_str(), String::as_str);
        let Some(value) = v.as_f64().filter(|x| x.is_finite()) else {
            out.problems.push(format!("{name}: {v} is not a number"));
            continue;
        };
        let flag = match flags.and_then(|f| f.get(name)).and_then(Value::as_str) {
            None => Flag::N,
            Some(letter) => letter.parse().unwrap_or_else(|_| {
                out.problems
                    .push(format!("{name}: unknown flag {letter:?}, stored as D"));
                Flag::D
            }),
        };
        out.readings.push(Reading {
            enterprise: enterprise.clone(),
            location: location.clone(),
            factor: code.into(),
            unit: factor(code).map_or("", |f| f.unit).into(),
            ts,
            value,
            kind: DataKind::Rtd,
            stat: Stat::Rtd,
            converted: false,
            flag,
            source: SourceRef {
                protocol: Protocol::Mqtt,
                device: device.clone(),
                resend: false,
            },
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub() -> MqttSubscription {
        toml::from_str(
            "topic = \"p/{enterprise}/{meter}\"\nformat = \"json\"\nfactor_map = { P = \"e_p\" }\n",
        )
        .unwrap()
    }

    #[test]
    fn default_shape_and_mapping() {
        let e: Id = "E1".into();
        let loc = Location::Meter("M1".into());
        let dev: Id = "p/E1/M1".into();
        let p = parse_json(br#"{"ts":"2026-11-27T08:00:00+08:00","values":{"P":12.5,"e_ep":"x","e_f":50},"flags":{"e_f":"M"}}"#, &sub(), &e, &loc, &dev).unwrap();
        assert_eq!(p.readings.len(), 2);
        let f: Vec<_> = p
            .readings
            .iter()
            .map(|r| (&*r.factor, r.value, r.flag))
            .collect();
        assert_eq!(f, vec![("e_p", 12.5, Flag::N), ("e_f", 50.0, Flag::M)]);
        assert_eq!(
            p.readings[0].ts,
            Utc.with_ymd_and_hms(2026, 11, 27, 0, 0, 0).unwrap()
        );
        assert_eq!(p.problems, vec!["e_ep: \"x\" is not a number".to_string()]);
        let p = parse_json(
            br#"{"ts":1764201600000,"values":{"e_p":1}}"#,
            &sub(),
            &e,
            &loc,
            &dev,
        )
        .unwrap();
        assert_eq!(p.readings[0].ts.timestamp_millis(), 1_764_201_600_000);
        assert!(matches!(
            parse_json(b"{", &sub(), &e, &loc, &dev),
            Err(PayloadError::NotJson(_))
        ));
        assert_eq!(
            parse_json(br#"{"values":{}}"#, &sub(), &e, &loc, &dev).unwrap_err(),
            PayloadError::NoTimestamp("ts".into())
        );
    }
}
