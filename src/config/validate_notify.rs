//! Checks for `[[channels]]` (pollwatch.toml) and for the rotations, overrides,
//! routes and escalation policies of duty.toml. Kept apart from `validate.rs` so the
//! alerting config can grow without crowding the source checks.

use std::collections::HashSet;

use super::channels::{ChannelConfig, ChannelKind, SmtpTls};
use super::duty::Duty;
use super::validate::Checker;
use crate::notify::template;

pub fn channels(c: &mut Checker<'_>, channels: &[ChannelConfig]) {
    let mut ids = HashSet::new();
    for (i, ch) in channels.iter().enumerate() {
        let p = format!("channels[{i}]");
        c.id(&format!("{p}.id"), &ch.id);
        if !ids.insert(ch.id.as_str()) {
            c.error(
                &format!("{p}.id"),
                format!("channel id {:?} is used twice", ch.id),
            );
        }
        let allowed = ch.kind.keys();
        for key in ch.keys_set() {
            if !allowed.contains(&key) {
                c.error(
                    &format!("{p}.{key}"),
                    format!("is not a key of a {} channel", ch.kind.as_str()),
                );
            }
        }
        channel(c, &p, ch);
    }
}

fn one_of(c: &mut Checker<'_>, p: &str, a: (&str, bool), b: (&str, bool), required: bool) {
    match (a.1, b.1) {
        (true, true) => c.error(p, format!("set {} or {}, not both", a.0, b.0)),
        (false, false) if required => c.error(p, format!("needs {} or {}", a.0, b.0)),
        _ => {}
    }
}

fn channel(c: &mut Checker<'_>, p: &str, ch: &ChannelConfig) {
    let has_token_source = ch.token_file.is_some() || ch.token_env.is_some();
    one_of(
        c,
        p,
        ("token_file", ch.token_file.is_some()),
        ("token_env", ch.token_env.is_some()),
        false,
    );
    one_of(
        c,
        p,
        ("secret_file", ch.secret_file.is_some()),
        ("secret_env", ch.secret_env.is_some()),
        false,
    );
    one_of(
        c,
        p,
        ("password_file", ch.password_file.is_some()),
        ("password_env", ch.password_env.is_some()),
        false,
    );
    let token_used = ch.url.as_deref().is_some_and(|u| u.contains("{token}"))
        || ch
            .headers
            .as_ref()
            .is_some_and(|h| h.values().any(|v| v.contains("{token}")));
    if token_used && !has_token_source {
        c.error(p, "uses {token} but sets neither token_file nor token_env");
    }
    if has_token_source && !token_used {
        c.error(
            p,
            "reads a token but {token} appears nowhere in url or headers",
        );
    }
    match ch.kind {
        ChannelKind::Wecom | ChannelKind::Dingtalk | ChannelKind::Feishu | ChannelKind::Webhook => {
            match &ch.url {
                Some(u) if u.starts_with("https://") || u.starts_with("http://") => {}
                Some(u) => c.error(
                    &format!("{p}.url"),
                    format!("must start with https:// (or http://), got {u:?}"),
                ),
                None => c.error(p, format!("a {} channel needs url", ch.kind.as_str())),
            }
        }
        ChannelKind::Mqtt => match &ch.url {
            Some(u) if u.starts_with("mqtt://") => {}
            Some(u) => c.error(
                &format!("{p}.url"),
                format!("must start with mqtt://, got {u:?}"),
            ),
            None => c.error(p, "an mqtt channel needs url"),
        },
        ChannelKind::Email => {}
    }
    if ch.kind == ChannelKind::Webhook {
        if let Some(body) = &ch.body {
            if let Err(e) = template::check(body) {
                c.error(&format!("{p}.body"), e.to_string());
            }
        }
        if (ch.ok_values.is_some() || ch.retry_values.is_some()) && ch.ok_field.is_none() {
            c.error(p, "ok_values and retry_values need ok_field");
        }
    }
    if ch.kind == ChannelKind::Email {
        email(c, p, ch);
    }
    if ch.kind == ChannelKind::Mqtt {
        match &ch.topic {
            None => c.error(p, "an mqtt channel needs topic"),
            Some(t) if t.is_empty() || t.contains(['+', '#']) => c.error(
                &format!("{p}.topic"),
                format!("must be a topic name without wildcards, got {t:?}"),
            ),
            Some(_) => {}
        }
        if let Some(q) = ch.qos.filter(|q| *q > 2) {
            c.error(&format!("{p}.qos"), format!("must be 0, 1 or 2, got {q}"));
        }
    }
    if (ch.password_file.is_some() || ch.password_env.is_some()) && ch.username.is_none() {
        c.error(p, "a password needs username");
    }
    if let Some(t) = &ch.template {
        if let Err(e) = template::check(t) {
            c.error(&format!("{p}.template"), e.to_string());
        }
    }
    if ch.rate_limit == Some(0) {
        c.error(&format!("{p}.rate_limit"), "must be at least 1 per minute");
    }
    if ch.max_attempts == Some(0) {
        c.error(&format!("{p}.max_attempts"), "must be at least 1");
    }
    if ch.timeout.is_some_and(|t| t.0.is_zero()) {
        c.error(&format!("{p}.timeout"), "must be longer than 0s");
    }
    if let (Some(b), Some(m)) = (ch.backoff, ch.backoff_max) {
        if b > m {
            c.error(
                &format!("{p}.backoff"),
                format!("must not exceed backoff_max ({m}), got {b}"),
            );
        }
    }
}

fn email(c: &mut Checker<'_>, p: &str, ch: &ChannelConfig) {
    match ch.smtp_host.as_deref() {
        None | Some("") => c.error(p, "an email channel needs smtp_host"),
        Some(host) => {
            let loopback = matches!(host, "localhost" | "127.0.0.1" | "::1");
            if ch.tls == Some(SmtpTls::None) && !loopback {
                c.error(
                    &format!("{p}.tls"),
                    format!("\"none\" is only allowed for a loopback relay, not {host:?}: use \"starttls\" or \"tls\""),
                );
            }
        }
    }
    match &ch.from {
        None => c.error(p, "an email channel needs from"),
        Some(f) => {
            if f.parse::<lettre::message::Mailbox>().is_err() {
                c.error(
                    &format!("{p}.from"),
                    format!("not an e-mail address: {f:?}"),
                );
            }
        }
    }
    for (j, to) in ch.to.iter().flatten().enumerate() {
        if to.parse::<lettre::message::Mailbox>().is_err() {
            c.error(
                &format!("{p}.to[{j}]"),
                format!("not an e-mail address: {to:?}"),
            );
        }
    }
}

/// `channels` is `None` when pollwatch.toml itself failed to parse: channel
/// references are then not checked (its own errors are reported instead).
pub fn duty(c: &mut Checker<'_>, d: &Duty, channels: Option<&[ChannelConfig]>) {
    let officers: HashSet<&str> = d.officers.iter().map(|o| o.id.as_str()).collect();
    let teams: HashSet<&str> = d.teams.iter().map(|t| t.id.as_str()).collect();
    let officer = |c: &mut Checker<'_>, path: &str, id: &str| {
        if !officers.contains(id) {
            c.error(path, format!("no officer with id {id:?}"));
        }
    };
    let team = |c: &mut Checker<'_>, path: &str, id: &str| {
        if !teams.contains(id) {
            c.error(path, format!("no team with id {id:?}"));
        }
    };

    let mut rotated = HashSet::new();
    for (i, r) in d.rotations.iter().enumerate() {
        let p = format!("rotations[{i}]");
        team(c, &format!("{p}.team"), &r.team);
        if !rotated.insert(r.team.as_str()) {
            c.error(
                &format!("{p}.team"),
                format!("team {:?} already has a rotation", r.team),
            );
        }
        for (j, o) in r.officers.iter().enumerate() {
            officer(c, &format!("{p}.officers[{j}]"), o);
        }
    }
    for (i, o) in d.overrides.iter().enumerate() {
        let p = format!("overrides[{i}]");
        team(c, &format!("{p}.team"), &o.team);
        officer(c, &format!("{p}.officer"), &o.officer);
        if o.until.is_some_and(|u| u < o.from) {
            c.error(&format!("{p}.until"), "must not be before from");
        }
    }

    let mut policies = HashSet::new();
    for (i, e) in d.escalation.iter().enumerate() {
        let p = format!("escalation[{i}]");
        c.id(&format!("{p}.id"), &e.id);
        if !policies.insert(e.id.as_str()) {
            c.error(
                &format!("{p}.id"),
                format!("escalation policy {:?} is defined twice", e.id),
            );
        }
        if e.levels.is_empty() {
            c.error(&format!("{p}.levels"), "a policy needs at least one level");
        }
        let mut last = None;
        for (j, l) in e.levels.iter().enumerate() {
            let lp = format!("{p}.levels[{j}]");
            if last.is_some_and(|prev| l.after < prev) {
                c.error(
                    &format!("{lp}.after"),
                    "levels must be in order: after may not be earlier than the level before",
                );
            }
            last = Some(l.after);
            if !l.on_duty && l.officers.is_empty() && l.teams.is_empty() {
                c.error(&lp, "a level needs on_duty = true, officers or teams");
            }
            for (k, o) in l.officers.iter().enumerate() {
                officer(c, &format!("{lp}.officers[{k}]"), o);
            }
            for (k, t) in l.teams.iter().enumerate() {
                team(c, &format!("{lp}.teams[{k}]"), t);
            }
        }
        if e.repeat_every.is_some_and(|r| r.0.is_zero()) {
            c.error(&format!("{p}.repeat_every"), "must be longer than 0s");
        }
        if e.ack_timeout.is_some_and(|r| r.0.is_zero()) {
            c.error(&format!("{p}.ack_timeout"), "must be longer than 0s");
        }
    }

    for (i, r) in d.routes.iter().enumerate() {
        let p = format!("routes[{i}]");
        team(c, &format!("{p}.team"), &r.team);
        if r.channels.is_empty() {
            c.error(
                &format!("{p}.channels"),
                "a route needs at least one channel",
            );
        }
        if let Some(chs) = channels {
            for (j, id) in r.channels.iter().enumerate() {
                if !chs.iter().any(|ch| &ch.id == id) {
                    c.error(
                        &format!("{p}.channels[{j}]"),
                        format!("no channel {id:?} in pollwatch.toml [[channels]]"),
                    );
                }
            }
        }
        if let Some(e) = &r.escalation {
            if !policies.contains(e.as_str()) {
                c.error(
                    &format!("{p}.escalation"),
                    format!("no escalation policy {e:?}"),
                );
            }
        }
    }
}

pub fn officers_and_teams(c: &mut Checker<'_>, d: &Duty) {
    let mut officers = HashSet::new();
    for (i, o) in d.officers.iter().enumerate() {
        let p = format!("officers[{i}]");
        c.id(&format!("{p}.id"), &o.id);
        c.non_empty(&format!("{p}.name"), &o.name);
        if !officers.insert(o.id.as_str()) {
            c.error(
                &format!("{p}.id"),
                format!("officer id {:?} is used twice", o.id),
            );
        }
        if let Some(m) = &o.mobile {
            c.mobile(&format!("{p}.mobile"), m);
        }
        if let Some(e) = &o.email {
            if !e.contains('@') {
                c.error(
                    &format!("{p}.email"),
                    format!("not an e-mail address: {e:?}"),
                );
            }
        }
    }
    let mut teams = HashSet::new();
    for (i, t) in d.teams.iter().enumerate() {
        let p = format!("teams[{i}]");
        c.id(&format!("{p}.id"), &t.id);
        if !teams.insert(t.id.as_str()) {
            c.error(
                &format!("{p}.id"),
                format!("team id {:?} is used twice", t.id),
            );
        }
        if t.members.is_empty() {
            c.error(&format!("{p}.members"), "a team needs at least one officer");
        }
        for (j, m) in t.members.iter().enumerate() {
            if !officers.contains(m.as_str()) {
                c.error(
                    &format!("{p}.members[{j}]"),
                    format!("no officer with id {m:?}"),
                );
            }
        }
    }
}
