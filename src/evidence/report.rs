//! An alert's record checked end to end (issue 18): the store's own checks
//! ([`Store::verify_alert`]) and the anchors outside it ([`super::anchor`]), with
//! the result in plain words — English for the terminal, Chinese for the case
//! file.

use std::path::Path;

use crate::store::{Store, Verdict, VerifyReport};

use super::anchor::{self, AnchorCheck};
use super::EvidenceError;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Checked {
    pub store: VerifyReport,
    pub anchors: AnchorCheck,
    pub verdict: Verdict,
}

/// Checks alert `id` against the store and the anchors in `<state_dir>/anchors`.
pub async fn verify(
    store: &Store,
    state_dir: &Path,
    id: i64,
) -> Result<Option<Checked>, EvidenceError> {
    let Some(report) = store.verify_alert(id).await? else {
        return Ok(None);
    };
    let events = store.alert_events(id).await?;
    let anchors = anchor::read_dir(&anchor::anchor_dir(state_dir));
    let a = anchor::check(id, &events, &anchors);
    let verdict = if !a.problems.is_empty() {
        Verdict::Altered
    } else {
        report.verdict
    };
    Ok(Some(Checked {
        store: report,
        anchors: a,
        verdict,
    }))
}

impl Checked {
    /// For the terminal.
    pub fn lines(&self) -> Vec<String> {
        let r = &self.store;
        let id = r.alert_id;
        let mut out = vec![match self.verdict {
            Verdict::Intact => format!(
                "alert #{id}: record INTACT — {} timeline rows keyed (key {}), alert, findings and readings as recorded; last hash {}",
                r.rows,
                r.key_ids.join(", "),
                r.last_hash
            ),
            Verdict::NotKeyed => format!(
                "alert #{id}: NOT KEYED — the record is consistent, but rows {:?} are chained without a key{} (whoever can write the database could have rewritten them); configure [evidence] key_file",
                r.unkeyed_rows,
                if r.unknown_key_rows.is_empty() {
                    String::new()
                } else {
                    format!(
                        " and rows {:?} under keys not configured here",
                        r.unknown_key_rows
                    )
                }
            ),
            Verdict::Altered => format!("alert #{id}: record ALTERED:"),
        }];
        for p in r.problems.iter().chain(&self.anchors.problems) {
            out.push(format!("  - {p}"));
        }
        if self.anchors.days.is_empty() {
            out.push("  anchors: no anchor covers this alert yet".into());
        } else {
            out.push(format!(
                "  anchors: checked against {}",
                self.anchors
                    .days
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        for n in &r.notes {
            out.push(format!("  note: {n}"));
        }
        out
    }

    /// The verification report for the case file, in Chinese: what was checked
    /// and what was found.
    pub fn report_zh(&self) -> String {
        let r = &self.store;
        let mut s = String::new();
        s.push_str(&format!("# 告警 #{} 证据核验报告\n\n", r.alert_id));
        s.push_str("## 核验了什么\n\n");
        s.push_str(&format!(
            "1. 时间线共 {} 行。每行的校验值由上一行的校验值、本行内容（时间、类型、操作人、代为操作对象、详情）、告警本身在该时刻的事实（企业、点位、因子、规则、监测值、限值、窗口、严重程度、状态及确认/解除人）和该行所依据监测数据的摘要共同计算；逐行重新计算。\n",
            r.rows
        ));
        s.push_str("2. 校验值使用 HMAC-SHA256 及数据库之外保管的密钥计算；只能写数据库而拿不到密钥的人无法伪造能通过核验的记录。\n");
        s.push_str("3. 告警当前记录与时间线最后一行记载的事实逐项比对。\n");
        s.push_str("4. 每条研判结论（finding）与时间线记载的数值、限值、说明和证据比对。\n");
        s.push_str("5. 研判所依据的监测数据（该因子在该点位、该时间窗内的全部数据）从数据库重新读取，与记录时的清单及其 SHA-256 摘要比对，逐条指出新增、修改或删除。\n");
        s.push_str("6. 与数据库之外的每日锚定文件（anchors/YYYY-MM-DD.json，Merkle 根）比对：已锚定的行不得缺失或改变。\n\n");
        s.push_str("## 结论\n\n");
        match self.verdict {
            Verdict::Intact => s.push_str(&format!(
                "**完整**：全部 {} 行均以密钥（密钥编号 {}）计算且核验一致；告警、研判结论和监测数据与记录时一致。\n",
                r.rows,
                r.key_ids.join("、")
            )),
            Verdict::NotKeyed => s.push_str(&format!(
                "**未加密钥**：记录自身一致，但第 {:?} 行未使用密钥计算（或其密钥不在本机），能写数据库的人可以重算这些行，因此不能据此证明未被改动。\n",
                r.unkeyed_rows
                    .iter()
                    .chain(r.unknown_key_rows.iter().map(|(s, _)| s))
                    .collect::<Vec<_>>()
            )),
            Verdict::Altered => s.push_str("**已被改动**：发现以下不一致（原文列出行号、字段或数据）：\n"),
        }
        for p in r.problems.iter().chain(&self.anchors.problems) {
            s.push_str(&format!("- {p}\n"));
        }
        s.push('\n');
        if self.anchors.days.is_empty() {
            s.push_str("锚定：尚无每日锚定文件覆盖本告警（当天的锚定在次日生成）。\n");
        } else {
            s.push_str(&format!(
                "锚定：已与以下日期的锚定文件比对：{}。\n",
                self.anchors
                    .days
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("、")
            ));
        }
        if !r.notes.is_empty() {
            s.push_str("\n说明（不属于改动）：\n");
            for n in &r.notes {
                s.push_str(&format!("- {n}\n"));
            }
        }
        s.push_str("\n## 第三方如何核验（无需密钥）\n\n");
        s.push_str("1. `sha256sum -c SHA256SUMS`：导出的文件彼此一致。\n");
        s.push_str("2. 将 anchor-YYYY-MM-DD.json 中的 root 与当日向外推送（邮件、MQTT）或公开的锚定值比对。\n");
        s.push_str("3. 运行 `pollwatch evidence check 本目录`（或按 README 所述算法自行计算）：每个导出行的公开摘要须沿 Merkle 路径算得当日的 root。\n");
        s
    }
}
