//! The report's content laid out once — sections of tables, notes and charts —
//! and rendered twice: as workbook sheets ([`super::xlsx`]) and as the HTML page
//! ([`super::html`]). What the bureau files and what it reads on screen are the
//! same rows by construction.

use std::collections::BTreeMap;

use super::{severity_label, svg, MonthlyReport};
use crate::rules::finding::rule_zh;

pub enum Value {
    Text(String),
    Num(f64),
    /// A fraction 0–1 shown as a percentage (a number in the workbook).
    Pct(f64),
    /// No value (a rate with nothing expected): a dash, never zero.
    Blank,
}

impl Value {
    fn pct(n: Option<f64>) -> Value {
        n.map_or(Value::Blank, Value::Pct)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Text(s.to_string())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Text(s)
    }
}
impl From<u32> for Value {
    fn from(n: u32) -> Value {
        Value::Num(f64::from(n))
    }
}
impl From<u64> for Value {
    fn from(n: u64) -> Value {
        Value::Num(n as f64)
    }
}
impl From<f64> for Value {
    fn from(n: f64) -> Value {
        Value::Num(n)
    }
}
impl From<Option<f64>> for Value {
    fn from(n: Option<f64>) -> Value {
        n.map_or(Value::Blank, Value::Num)
    }
}

pub struct Row {
    pub cells: Vec<Value>,
    /// Below a threshold or to be reviewed: shaded in both forms.
    pub highlight: bool,
}

pub enum Block {
    Table {
        head: Vec<&'static str>,
        rows: Vec<Row>,
    },
    Note(String),
    /// An SVG chart (inline in HTML, a PNG image in the workbook).
    Chart(String),
}

pub struct Section {
    /// Sheet name.
    pub sheet: &'static str,
    /// Heading on the page.
    pub title: &'static str,
    pub blocks: Vec<Block>,
}

fn row(cells: Vec<Value>) -> Row {
    Row {
        cells,
        highlight: false,
    }
}

fn pairs(items: Vec<(&str, Value)>) -> Vec<Row> {
    items
        .into_iter()
        .map(|(k, v)| row(vec![k.into(), v]))
        .collect()
}

fn counts(m: &BTreeMap<String, u32>, label: impl Fn(&str) -> String) -> Vec<Row> {
    m.iter()
        .map(|(k, v)| row(vec![label(k).into(), (*v).into()]))
        .collect()
}

pub fn sections(r: &MonthlyReport) -> Vec<Section> {
    let o = &r.overview;
    let platform = |k: &str| o.by_platform.get(k).copied().unwrap_or(0);
    let overview = Section {
        sheet: "概况",
        title: "一、概况",
        blocks: vec![
            Block::Table {
                head: vec!["指标", "数量"],
                rows: pairs(vec![
                    ("纳入监管企业", o.enterprises.into()),
                    ("自动监控企业", o.automatic_monitoring.into()),
                    ("其中：省级平台", platform("provincial").into()),
                    ("其中：市级平台", platform("city").into()),
                    ("未标注平台", platform("unset").into()),
                    ("用电监控企业", o.power_monitoring.into()),
                    ("正面清单企业", o.positive_list.into()),
                    ("排口总数", o.outlets.into()),
                    ("月末在线排口", o.outlets_online.into()),
                    ("电表总数", o.meters.into()),
                    ("月末在线电表", o.meters_online.into()),
                ]),
            },
            Block::Table {
                head: vec!["区县", "企业", "自动监控", "用电监控", "正面清单"],
                rows: o
                    .by_district
                    .iter()
                    .map(|d| {
                        row(vec![
                            d.district.clone().into(),
                            d.enterprises.into(),
                            d.automatic_monitoring.into(),
                            d.power_monitoring.into(),
                            d.positive_list.into(),
                        ])
                    })
                    .collect(),
            },
        ],
    };
    let t = &r.transmission;
    let transmission = Section {
        sheet: "数据传输有效率",
        title: "二、数据传输有效率",
        blocks: if t.available {
            vec![
                Block::Table {
                    head: vec![
                        "排名",
                        "企业",
                        "排口",
                        "应传小时",
                        "实传小时",
                        "有效小时",
                        "传输率",
                        "有效率",
                        "有效传输率",
                    ],
                    rows: t
                        .rows
                        .iter()
                        .enumerate()
                        .map(|(i, x)| Row {
                            cells: vec![
                                (i as u32 + 1).into(),
                                x.enterprise_name.clone().into(),
                                x.outlet.clone().into(),
                                x.expected.into(),
                                x.received.into(),
                                x.valid.into(),
                                Value::pct(x.transmission_rate),
                                Value::pct(x.validity_rate),
                                Value::pct(x.effective_rate),
                            ],
                            highlight: x
                                .effective_rate
                                .is_some_and(|v| v < super::MIN_EFFECTIVE_RATE),
                        })
                        .collect(),
                },
                Block::Chart(svg::rate_distribution(&t.rows)),
            ]
            .into_iter()
            .chain(t.note.clone().map(Block::Note))
            .collect()
        } else {
            vec![Block::Note(
                t.note.clone().unwrap_or_else(|| "not available".into()),
            )]
        },
    };
    let a = &r.alerts;
    let alerts = Section {
        sheet: "告警",
        title: "三、告警",
        blocks: vec![
            Block::Table {
                head: vec!["指标", "数值"],
                rows: pairs(vec![
                    ("本月新增告警", a.opened.into()),
                    ("已确认", a.acknowledged.into()),
                    ("15分钟内确认", a.acked_within_15m.into()),
                    ("30分钟内确认", a.acked_within_30m.into()),
                    ("60分钟内确认", a.acked_within_60m.into()),
                    ("确认用时中位数(分钟)", a.median_ack_minutes.into()),
                    ("确认用时90分位(分钟)", a.p90_ack_minutes.into()),
                    ("执法人员解除", a.resolved_by_officer.into()),
                    ("自动解除", a.resolved_automatically.into()),
                    ("月末未解除", a.open_at_month_end.into()),
                ]),
            },
            Block::Table {
                head: vec!["规则", "告警数"],
                rows: counts(&a.by_rule, |k| rule_zh(k).to_string()),
            },
            Block::Table {
                head: vec!["级别", "告警数"],
                rows: counts(&a.by_severity, |k| severity_label(k).to_string()),
            },
            Block::Table {
                head: vec!["区县", "告警数"],
                rows: counts(&a.by_district, str::to_string),
            },
            Block::Chart(svg::alerts_per_day(&r.alerts_per_day)),
        ],
    };
    vec![
        overview,
        transmission,
        alerts,
        exceedances(r),
        power(r),
        orders(r),
        positive(r),
    ]
}

fn exceedances(r: &MonthlyReport) -> Section {
    Section {
        sheet: "超标",
        title: "四、超标",
        blocks: vec![Block::Table {
            head: vec![
                "企业",
                "点位",
                "因子",
                "超标小时",
                "超标日",
                "瞬时超标次数",
                "最高值(折算)",
            ],
            rows: r
                .exceedances
                .iter()
                .map(|x| {
                    row(vec![
                        x.enterprise_name.clone().into(),
                        x.location.clone().into(),
                        x.factor.clone().into(),
                        x.hours.into(),
                        x.days.into(),
                        x.episodes.into(),
                        x.max_value.into(),
                    ])
                })
                .collect(),
        }],
    }
}

fn power(r: &MonthlyReport) -> Section {
    Section {
        sheet: "用电监控",
        title: "五、用电监控",
        blocks: vec![Block::Table {
            head: vec![
                "企业",
                "治污设施未运行(小时)",
                "治污设施功率不足(小时)",
                "发现次数",
            ],
            rows: r
                .power
                .iter()
                .map(|x| {
                    row(vec![
                        x.enterprise_name.clone().into(),
                        x.not_running_hours.into(),
                        x.underpowered_hours.into(),
                        x.findings.into(),
                    ])
                })
                .collect(),
        }],
    }
}

fn orders(r: &MonthlyReport) -> Section {
    Section {
        sheet: "限产停产",
        title: "六、限产停产",
        blocks: vec![Block::Table {
            head: vec![
                "企业",
                "指令",
                "类型",
                "来源",
                "月内执行(小时)",
                "合规(小时)",
                "违规(小时)",
                "违规次数",
            ],
            rows: r
                .orders
                .iter()
                .map(|x| Row {
                    cells: vec![
                        x.enterprise_name.clone().into(),
                        x.order.clone().into(),
                        if x.kind == "stop" { "停产" } else { "限产" }.into(),
                        x.source.clone().into(),
                        x.hours_in_force.into(),
                        x.compliance_hours.into(),
                        x.violation_hours.into(),
                        x.violations.into(),
                    ],
                    highlight: x.violations > 0,
                })
                .collect(),
        }],
    }
}

fn positive(r: &MonthlyReport) -> Section {
    Section {
        sheet: "正面清单",
        title: "七、正面清单",
        blocks: vec![Block::Table {
            head: vec!["企业", "区县", "发现", "违法违规", "主要问题", "评估"],
            rows: r
                .positive_list
                .iter()
                .map(|x| {
                    let rules: Vec<String> = x
                        .by_rule
                        .iter()
                        .map(|(k, v)| format!("{} {v}", rule_zh(k)))
                        .collect();
                    let review = x.assessment == "review";
                    Row {
                        cells: vec![
                            x.enterprise_name.clone().into(),
                            x.district.clone().into(),
                            x.findings.into(),
                            x.violations.into(),
                            rules.join("、").into(),
                            if review {
                                "建议复核正面清单资格"
                            } else {
                                "保持"
                            }
                            .into(),
                        ],
                        highlight: review,
                    }
                })
                .collect(),
        }],
    }
}
