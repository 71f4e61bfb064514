//! The report as one printable HTML page (A4; the same sections and rows as the
//! workbook, from [`super::table`]); the console shows it under `/reports` and the
//! CLI writes it beside the xlsx.

use std::fmt::Write as _;

use super::svg::esc;
use super::table::{sections, Block, Value};
use super::{file_stem, MonthlyReport};

/// The standalone page's own body style (the console has its own).
const PAGE: &str =
    "body{font-family:'WenQuanYi Micro Hei','Noto Sans CJK SC',sans-serif;margin:1.5em;color:#222}";
/// The report's style, scoped to `.report` so the console can serve it too.
const STYLE: &str = ".report h1{font-size:1.5em}.report h2{font-size:1.15em;border-bottom:2px solid #1565c0;padding-bottom:.2em;margin-top:1.6em}\
.report table{border-collapse:collapse;margin:.5em 0;font-size:.9em}.report td,.report th{border:1px solid #bbb;padding:.25em .5em;text-align:left}\
.report th{background:#eef3fb}.report td.n{text-align:right}.report tr.low td{background:#fde8e8}.report .note{color:#666;font-size:.85em}\
.report svg{max-width:100%;height:auto}@media print{.report{margin:0}.report h2{page-break-after:avoid}.report table{page-break-inside:avoid}}";

/// The whole page (`standalone`) or the report's body for the console's layout
/// (with [`style`]).
pub fn page(r: &MonthlyReport, standalone: bool) -> String {
    let body = body(r);
    if !standalone {
        return body;
    }
    format!(
        "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{}</title><style>{PAGE}{STYLE}</style></head><body>{body}</body></html>",
        esc(&file_stem(&r.month))
    )
}

/// The report's own style, for pages that embed [`page`]`(r, false)`.
pub fn style() -> &'static str {
    STYLE
}

fn number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{n:.0}")
    } else {
        format!("{n:.2}")
    }
}

fn body(r: &MonthlyReport) -> String {
    let mut s = format!(
        "<div class=\"report\"><h1>{}</h1><p class=\"note\">统计期间 {} 至 {}（UTC；按 {} 的自然月，不含终点）；生成于 {}。</p>",
        esc(&file_stem(&r.month)),
        r.from.format("%Y-%m-%d %H:%M"),
        r.to.format("%Y-%m-%d %H:%M"),
        esc(&r.timezone),
        r.generated_at.format("%Y-%m-%d %H:%M UTC")
    );
    for section in sections(r) {
        let _ = write!(s, "<h2>{}</h2>", esc(section.title));
        for block in section.blocks {
            match block {
                Block::Note(n) => {
                    let _ = write!(s, "<p class=\"note\">{}</p>", esc(&n));
                }
                Block::Chart(svg) => s.push_str(&svg),
                Block::Table { head, rows } => {
                    s.push_str("<table><thead><tr>");
                    for h in head {
                        let _ = write!(s, "<th>{}</th>", esc(h));
                    }
                    s.push_str("</tr></thead><tbody>");
                    for row in rows {
                        s.push_str(if row.highlight {
                            "<tr class=\"low\">"
                        } else {
                            "<tr>"
                        });
                        for c in row.cells {
                            match c {
                                Value::Text(t) => {
                                    let _ = write!(s, "<td>{}</td>", esc(&t));
                                }
                                Value::Num(n) => {
                                    let _ = write!(s, "<td class=\"n\">{}</td>", number(n));
                                }
                                Value::Pct(n) => {
                                    let _ = write!(s, "<td class=\"n\">{:.1}%</td>", n * 100.0);
                                }
                                Value::Blank => s.push_str("<td class=\"n\">—</td>"),
                            }
                        }
                        s.push_str("</tr>");
                    }
                    s.push_str("</tbody></table>");
                }
            }
        }
    }
    s.push_str("</div>");
    s
}
