//! From a parsed HJ 212 data segment to [`Reading`]s.
//!
//! This is where protocol details stop (invariant 2): `DataTime` becomes UTC using
//! the configured zone, `-Rtd`/`-ZsAvg`/… become a data kind, a statistic and a
//! converted flag, a factor's `-Flag` applies to all its values in the frame,
//! `-SampleTime` replaces `DataTime` for that factor's real-time value, and
//! 2005-era codes (`011`, `B01`, …) become their 2017 codes. A code we do not know
//! is stored as received and counted, never dropped. One unreadable value costs
//! that value only: it is reported as a [`Problem`] and the rest of the frame is
//! stored.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;

use super::codec::segment::{DataSegment, Factor};
use super::codec::time::LocalDateTime;
use crate::model::{
    factor, factor_by_alias, DataKind, FactorClass, Flag, Id, Location, Protocol, Reading,
    SourceRef, Stat,
};
use crate::timefmt::local_to_utc;

/// What an upload's CN asks of us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// 2011, 2051, 2061, 2031: values of a period (or an instant); 2111 (2025):
    /// furnace temperature 5-minute means, stored as minute data.
    Data(DataKind),
    /// 2021: device run status (`SBxx-RS`).
    DeviceStatus,
    /// 2041: device run time of a day (`SBxx-RT`).
    DeviceRunTime,
    /// Stored as a device event (`device_status`) under this name and answered:
    /// 2081 `restart`, 3020 `info`, and from HJ 212-2025 1001 `hardware_ids`
    /// (logger, CPU and MAC ids), 1014 `key_request` (keys are issued by the
    /// sysadmin, never automatically), 2062 `qc_check` (an automatic
    /// standard-sample check: quality control, not a pollutant reading) and 2013
    /// `raw_data` (VOC raw data: retention times, peak areas; kept whole, as sent).
    Event(&'static str),
    /// 1013: the logger asks for the time.
    TimeRequest,
    /// 9021 (vendor) or 9015 (2025): "I am alive".
    Heartbeat,
    /// 9011–9014: the logger answering one of our requests; never answered.
    Answer,
    /// Anything else; kept raw as a dead letter.
    Other,
}

impl Command {
    pub fn of(cn: &str) -> Command {
        match cn {
            "2011" => Command::Data(DataKind::Rtd),
            "2051" => Command::Data(DataKind::Min),
            "2061" => Command::Data(DataKind::Hour),
            "2031" => Command::Data(DataKind::Day),
            "2111" => Command::Data(DataKind::Min),
            "2021" => Command::DeviceStatus,
            "2041" => Command::DeviceRunTime,
            "2081" => Command::Event("restart"),
            "3020" => Command::Event("info"),
            "1001" => Command::Event("hardware_ids"),
            "1014" => Command::Event("key_request"),
            "2062" => Command::Event("qc_check"),
            "2013" => Command::Event("raw_data"),
            "1013" => Command::TimeRequest,
            "9021" | "9015" => Command::Heartbeat,
            "9011" | "9012" | "9013" | "9014" => Command::Answer,
            _ => Command::Other,
        }
    }

    /// Uploads a logger expects a 9014 for once stored.
    pub fn is_upload(self) -> bool {
        matches!(
            self,
            Command::Data(_)
                | Command::DeviceStatus
                | Command::DeviceRunTime
                | Command::Event(_)
                | Command::Other
        )
    }
}

/// Whose data a frame is (resolved from its MN).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub enterprise: Id,
    pub outlet: Id,
    pub mn: Id,
}

/// A meter fed by a logger (HJ 212-2025 power-use data): values of `factor` in
/// the logger's uploads are the meter's active power.
#[derive(Debug, Clone, PartialEq)]
pub struct PowerFeed {
    pub factor: Id,
    pub meter: Id,
    /// Multiplies the value into kW.
    pub scale: f64,
}

/// Moves the values of power factors from the logger's outlet to their meters,
/// as active power (`e_p`, kW): linkage rules then see them like a polled meter's.
pub fn route_power(readings: &mut [Reading], feeds: &[PowerFeed]) {
    if feeds.is_empty() {
        return;
    }
    for r in readings {
        if let Some(f) = feeds.iter().find(|f| f.factor == r.factor) {
            r.location = Location::Meter(f.meter.clone());
            r.factor = Id::from("e_p");
            r.unit = Id::from("kW");
            r.value *= f.scale;
        }
    }
}

/// One value of a frame that could not be used, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub value: String,
    pub reason: &'static str,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mapped {
    pub readings: Vec<Reading>,
    pub problems: Vec<Problem>,
    /// Factor codes neither in the catalogue nor known 2005 aliases (stored as is).
    pub unknown_codes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    #[error("CN {0} carries no DataTime")]
    NoDataTime(String),
    #[error(transparent)]
    Segment(#[from] super::codec::error::SegmentError),
    #[error(transparent)]
    Time(#[from] crate::timefmt::TimeError),
}

/// Converts a zone-less HJ 212 time in `tz` to UTC.
pub fn to_utc(t: LocalDateTime, tz: Tz) -> Result<DateTime<Utc>, crate::timefmt::TimeError> {
    let naive = NaiveDate::from_ymd_opt(i32::from(t.year), u32::from(t.month), u32::from(t.day))
        .and_then(|d| d.and_hms_opt(u32::from(t.hour), u32::from(t.minute), u32::from(t.second)))
        .ok_or_else(|| crate::timefmt::TimeError::Unparsable(t.to_string()))?;
    local_to_utc(naive, tz)
}

/// Maps a data upload (2011/2051/2061/2031) or a device upload (2021/2041).
pub fn map_values(
    seg: &DataSegment<'_>,
    kind: DataKind,
    origin: &Origin,
    tz: Tz,
) -> Result<Mapped, MapError> {
    let data_time = seg
        .data_time()?
        .ok_or_else(|| MapError::NoDataTime(seg.cn.to_string()))?;
    let ts = to_utc(data_time, tz)?;
    let source = SourceRef {
        protocol: Protocol::Hj212,
        device: origin.mn.clone(),
        resend: seg.is_resend(),
    };
    let mut out = Mapped::default();
    let factors: Vec<Factor<'_>> = seg.factors().collect();
    // A factor's -Flag and -SampleTime may come before or after its values; the
    // last one written counts.
    let mut flags: HashMap<&str, Flag> = HashMap::new();
    let mut sample_times: HashMap<&str, DateTime<Utc>> = HashMap::new();
    for f in &factors {
        match f.suffix {
            "Flag" => {
                let flag = f.value.trim().parse::<Flag>().unwrap_or_else(|_| {
                    // Stored as a fault so that it is never judged as valid data.
                    out.problems.push(Problem {
                        key: format!("{}-Flag", f.code),
                        value: f.value.to_string(),
                        reason: "unknown data flag; stored as D",
                    });
                    Flag::D
                });
                flags.insert(f.code, flag);
            }
            "SampleTime" if kind == DataKind::Rtd => {
                match LocalDateTime::parse_compact(f.value.trim()).map(|t| to_utc(t, tz)) {
                    Ok(Ok(t)) => {
                        sample_times.insert(f.code, t);
                    }
                    _ => out.problems.push(Problem {
                        key: format!("{}-SampleTime", f.code),
                        value: f.value.to_string(),
                        reason: "not YYYYMMDDhhmmss; DataTime used",
                    }),
                }
            }
            _ => {}
        }
    }
    for f in &factors {
        let Some((stat, converted)) = value_suffix(f.suffix) else {
            continue;
        };
        let (code, class) = resolve(f.code, &mut out.unknown_codes);
        let value: f64 = match f.value.trim().parse::<f64>() {
            Ok(v) if v.is_finite() => v,
            _ => {
                out.problems.push(Problem {
                    key: format!("{}-{}", f.code, f.suffix),
                    value: f.value.to_string(),
                    reason: "value is not a number",
                });
                continue;
            }
        };
        let flag = flags.get(f.code).copied().unwrap_or(Flag::N);
        let at = sample_times.get(f.code).copied().unwrap_or(ts);
        out.readings.push(Reading {
            enterprise: origin.enterprise.clone(),
            location: Location::Outlet(origin.outlet.clone()),
            factor: code.clone(),
            unit: unit(&code, class, stat),
            ts: at,
            value,
            kind,
            stat,
            converted,
            flag,
            source: source.clone(),
        });
    }
    Ok(out)
}

/// Device status (2021) and run time (2041) are stored as readings of the device
/// code with its suffix (`SB1-RS`, `SB1-RT`): rules can then see that a treatment
/// device was off.
pub fn map_devices(seg: &DataSegment<'_>, origin: &Origin, tz: Tz) -> Result<Mapped, MapError> {
    let data_time = seg
        .data_time()?
        .ok_or_else(|| MapError::NoDataTime(seg.cn.to_string()))?;
    let ts = to_utc(data_time, tz)?;
    let kind = if seg.cn == "2041" {
        DataKind::Day
    } else {
        DataKind::Rtd
    };
    let mut out = Mapped::default();
    for f in seg.factors().filter(|f| matches!(f.suffix, "RS" | "RT")) {
        match f.value.trim().parse::<f64>() {
            Ok(value) if value.is_finite() => out.readings.push(Reading {
                enterprise: origin.enterprise.clone(),
                location: Location::Outlet(origin.outlet.clone()),
                factor: Id::from(format!("{}-{}", f.code, f.suffix)),
                unit: Id::from(if f.suffix == "RT" { "h" } else { "" }),
                ts,
                value,
                kind,
                stat: Stat::Rtd,
                converted: false,
                flag: Flag::N,
                source: SourceRef {
                    protocol: Protocol::Hj212,
                    device: origin.mn.clone(),
                    resend: seg.is_resend(),
                },
            }),
            _ => out.problems.push(Problem {
                key: format!("{}-{}", f.code, f.suffix),
                value: f.value.to_string(),
                reason: "value is not a number",
            }),
        }
    }
    Ok(out)
}

/// `Rtd` → (rtd, measured), `ZsAvg` → (avg, converted), …; `None` for suffixes
/// that are not values (`Flag`, `SampleTime`, `EFlag`, `Info`, vendor extras).
fn value_suffix(suffix: &str) -> Option<(Stat, bool)> {
    let (rest, converted) = match suffix.strip_prefix("Zs") {
        Some(rest) => (rest, true),
        None => (suffix, false),
    };
    let stat = match rest {
        "Rtd" => Stat::Rtd,
        "Avg" => Stat::Avg,
        "Min" => Stat::Min,
        "Max" => Stat::Max,
        "Cou" if !converted => Stat::Cou,
        _ => return None,
    };
    Some((stat, converted))
}

/// The 2017 code for a received code, and its class when known.
fn resolve(code: &str, unknown: &mut Vec<String>) -> (Id, Option<FactorClass>) {
    if let Some(f) = factor(code).or_else(|| factor_by_alias(code)) {
        return (Id::from(f.code), Some(f.class));
    }
    if !unknown.iter().any(|u| u == code) {
        unknown.push(code.to_string());
    }
    (Id::from(code), None)
}

fn unit(code: &str, class: Option<FactorClass>, stat: Stat) -> Id {
    let u = match (stat, class) {
        (Stat::Cou, Some(FactorClass::GasParameter | FactorClass::WaterParameter)) => "m³",
        (Stat::Cou, Some(_)) => "kg",
        (Stat::Cou, None) => "",
        _ => factor(code).map_or("", |f| f.unit),
    };
    Id::from(u)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use chrono_tz::Asia::Shanghai;

    fn origin() -> Origin {
        Origin {
            enterprise: "E1".into(),
            outlet: "DA001".into(),
            mn: "MN1".into(),
        }
    }

    fn map(text: &str) -> Mapped {
        let seg = DataSegment::parse(text).unwrap();
        let Command::Data(kind) = Command::of(seg.cn) else {
            panic!("not data")
        };
        map_values(&seg, kind, &origin(), Shanghai).unwrap()
    }

    #[test]
    fn real_time_values_with_flags_sample_time_and_conversion() {
        let m = map("QN=1;ST=31;CN=2011;PW=1;MN=MN1;Flag=5;CP=&&DataTime=20261127083000;a21026-Rtd=41.2,a21026-ZsRtd=45.0,a21026-Flag=N;a34013-Flag=M,a34013-Rtd=3.1;w01018-Rtd=27.3,w01018-SampleTime=20261127082900&&");
        let r = &m.readings;
        assert_eq!(r.len(), 4);
        assert_eq!(
            (&*r[0].factor, r[0].value, r[0].converted, r[0].flag),
            ("a21026", 41.2, false, Flag::N)
        );
        assert_eq!(
            (r[1].value, r[1].converted, r[1].stat),
            (45.0, true, Stat::Rtd)
        );
        assert_eq!(
            r[0].ts,
            Utc.with_ymd_and_hms(2026, 11, 27, 0, 30, 0).unwrap()
        );
        assert_eq!(r[2].flag, Flag::M, "-Flag before the value still applies");
        assert_eq!(&*r[2].unit, "mg/m³");
        assert_eq!(
            r[3].ts,
            Utc.with_ymd_and_hms(2026, 11, 27, 0, 29, 0).unwrap(),
            "SampleTime wins"
        );
        assert!(m.problems.is_empty() && m.unknown_codes.is_empty());
    }

    #[test]
    fn hourly_statistics_units_and_period_start() {
        let m = map("CN=2061;MN=MN1;CP=&&DataTime=20261127080000;w01018-Avg=30,w01018-Min=20,w01018-Max=40,w01018-Cou=1.5;w00000-Avg=2.0,w00000-Cou=7200&&");
        let got: Vec<_> = m
            .readings
            .iter()
            .map(|r| (&*r.factor, r.stat, r.value, &*r.unit, r.kind))
            .collect();
        assert_eq!(
            got,
            vec![
                ("w01018", Stat::Avg, 30.0, "mg/L", DataKind::Hour),
                ("w01018", Stat::Min, 20.0, "mg/L", DataKind::Hour),
                ("w01018", Stat::Max, 40.0, "mg/L", DataKind::Hour),
                ("w01018", Stat::Cou, 1.5, "kg", DataKind::Hour),
                ("w00000", Stat::Avg, 2.0, "L/s", DataKind::Hour),
                ("w00000", Stat::Cou, 7200.0, "m³", DataKind::Hour),
            ]
        );
        assert_eq!(
            m.readings[0].ts,
            Utc.with_ymd_and_hms(2026, 11, 27, 0, 0, 0).unwrap()
        );
    }

    #[test]
    fn old_codes_map_and_unknown_codes_are_kept() {
        let m = map(
            "CN=2051;MN=MN1;CP=&&DataTime=20261127080100;011-Avg=55.5;B01-Avg=3;x99999-Avg=1.5&&",
        );
        let codes: Vec<_> = m.readings.iter().map(|r| &*r.factor).collect();
        assert_eq!(codes, vec!["w01018", "w00000", "x99999"]);
        assert_eq!(m.unknown_codes, vec!["x99999".to_string()]);
        assert_eq!(&*m.readings[2].unit, "");
    }

    #[test]
    fn one_bad_value_costs_only_itself() {
        let m = map("CN=2011;MN=MN1;CP=&&DataTime=20261127080000;a21026-Rtd=abc,a21026-Flag=N;a21002-Flag=Q,a21002-Rtd=20,a21002-ZsRtd=21;a19001-Rtd=NaN&&");
        assert_eq!(m.readings.len(), 2);
        assert!(
            m.readings.iter().all(|r| r.flag == Flag::D),
            "unknown flag letter is never judged valid"
        );
        let reasons: Vec<_> = m
            .problems
            .iter()
            .map(|p| (p.key.as_str(), p.reason))
            .collect();
        assert_eq!(
            reasons,
            vec![
                ("a21002-Flag", "unknown data flag; stored as D"),
                ("a21026-Rtd", "value is not a number"),
                ("a19001-Rtd", "value is not a number"),
            ]
        );
    }

    #[test]
    fn missing_or_bad_data_time_is_an_error() {
        let seg = DataSegment::parse("CN=2011;MN=MN1;CP=&&a21026-Rtd=1&&").unwrap();
        let err = map_values(&seg, DataKind::Rtd, &origin(), Shanghai).unwrap_err();
        assert_eq!(err.to_string(), "CN 2011 carries no DataTime");
        let seg = DataSegment::parse("CN=2011;MN=MN1;CP=&&DataTime=20261327080000;a21026-Rtd=1&&")
            .unwrap();
        assert!(map_values(&seg, DataKind::Rtd, &origin(), Shanghai).is_err());
    }

    #[test]
    fn device_status_and_run_time() {
        let seg =
            DataSegment::parse("CN=2021;MN=MN1;CP=&&DataTime=20261127080000;SB1-RS=1;SB2-RS=0&&")
                .unwrap();
        let m = map_devices(&seg, &origin(), Shanghai).unwrap();
        let got: Vec<_> = m.readings.iter().map(|r| (&*r.factor, r.value)).collect();
        assert_eq!(got, vec![("SB1-RS", 1.0), ("SB2-RS", 0.0)]);
        let seg = DataSegment::parse("CN=2041;MN=MN1;CP=&&DataTime=20261127000000;SB1-RT=23.5&&")
            .unwrap();
        let m = map_devices(&seg, &origin(), Shanghai).unwrap();
        assert_eq!(
            (m.readings[0].kind, &*m.readings[0].unit),
            (DataKind::Day, "h")
        );
    }

    #[test]
    fn commands_classify() {
        assert_eq!(Command::of("2061"), Command::Data(DataKind::Hour));
        assert!(Command::of("2065").is_upload());
        assert!(!Command::of("9014").is_upload());
        assert!(!Command::of("9021").is_upload());
    }
}
