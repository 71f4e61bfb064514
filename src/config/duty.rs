//! `duty.toml`: the people alerts go to. Officers and the teams they form; shift
//! rotations, routing and escalation join this file with the alerting work.
//!
//! ```toml
//! [[officers]]
//! id = "zhangsan"
//! name = "张三"
//! mobile = "13800000001"
//! email = "zhangsan@example.gov.cn"
//! wecom_user = "ZhangSan"
//! dingtalk_user = "manager1234"
//!
//! [[teams]]
//! id = "wuzhong"
//! name = "吴中区执法大队"
//! members = ["zhangsan"]
//! ```

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Duty {
    #[serde(default)]
    pub officers: Vec<Officer>,
    #[serde(default)]
    pub teams: Vec<Team>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Officer {
    pub id: String,
    pub name: String,
    pub mobile: Option<String>,
    pub email: Option<String>,
    pub wecom_user: Option<String>,
    pub dingtalk_user: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Team {
    pub id: String,
    pub name: String,
    pub members: Vec<String>,
}
