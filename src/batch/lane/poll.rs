//! The batch lane's second half: polling the batches with backoff (a progress line when a
//! batch's status or counts change), reading their results (inline or paged, the 402 gate)
//! and turning them into records.

use std::time::Instant;

use serde_json::Value;
use serde_json::value::RawValue;

use super::super::wire::{self, Batch};
use super::{Active, Driver, EARLY_404S, POLL_CAP, poll_base, record};
use crate::output::record::{ErrorKind, RecordError, timestamp};
use crate::output::writer::Event;
use crate::pool::StopReason;
use crate::retry::describe;

impl Driver {
    /// Poll every batch with rows of this run until all are collected, `--wait` passes or
    /// the run stops.
    pub(super) async fn poll_all(&mut self) {
        let started = Instant::now();
        let deadline = self.ctx.settings.wait.map(|w| started + w);
        let mut delay = poll_base();
        loop {
            let pending: Vec<usize> = (0..self.actives.len())
                .filter(|&i| {
                    let a = &self.actives[i];
                    !a.done && a.known.batch_id.is_some() && !a.attached.is_empty()
                })
                .collect();
            if pending.is_empty() || self.ctx.stop.is_cancelled() {
                break;
            }
            for i in pending {
                if self.ctx.stop.is_cancelled() {
                    break;
                }
                self.poll_one(i).await;
            }
            let left = self.still_running();
            if left.is_empty() || self.ctx.stop.is_cancelled() {
                break;
            }
            let mut sleep = delay;
            if let Some(deadline) = deadline {
                let now = Instant::now();
                if now >= deadline {
                    self.outcome.waiting = Some(waiting_message(&left));
                    break;
                }
                sleep = sleep.min(deadline - now);
            }
            self.pause(sleep).await;
            delay = delay.mul_f64(1.5).min(POLL_CAP);
        }
        if self.outcome.waiting.is_none() {
            let left = self.still_running();
            if !left.is_empty() {
                self.outcome.waiting = Some(waiting_message(&left));
            }
        }
    }

    /// (batch id, status, rows) of every batch still running with rows of this run.
    fn still_running(&self) -> Vec<(String, String, usize)> {
        self.actives
            .iter()
            .filter(|a| !a.done && !a.attached.is_empty())
            .map(|a| {
                (
                    a.known
                        .batch_id
                        .clone()
                        .unwrap_or_else(|| "(not submitted)".into()),
                    a.status.clone(),
                    a.attached.len(),
                )
            })
            .collect()
    }

    async fn poll_one(&mut self, i: usize) {
        let Some(id) = self.actives[i].known.batch_id.clone() else {
            return;
        };
        let path = format!("{}/{id}", self.ctx.settings.path);
        let resp = match self.ctx.client.get_raw(&path).await {
            Ok(r) => r,
            Err(f) => {
                tracing::info!("batch {id}: poll failed ({}); trying again", describe(&f));
                return;
            }
        };
        match resp.status {
            200 => {}
            404 => {
                let a = &mut self.actives[i];
                a.not_found += 1;
                if a.not_found > EARLY_404S {
                    let error = RecordError {
                        kind: ErrorKind::ProviderError,
                        status: Some(404),
                        code: None,
                        message: format!(
                            "the Batch API does not know batch {id} ({} polls answered 404); \
                             a rerun sends the row again",
                            a.not_found
                        ),
                    };
                    let mut a = self.take(i);
                    self.fail_all(&mut a, Some(&id), error, true).await;
                    self.close(i, a);
                }
                return;
            }
            401 | 403 => {
                self.ctx.pool.stop(StopReason::Auth(format!(
                    "the Batch API refused the key reading batch {id}"
                )));
                return;
            }
            402 => {
                self.payment_gate(&id);
                return;
            }
            _ => {
                tracing::info!(
                    "batch {id}: poll answered HTTP {}; trying again",
                    resp.status
                );
                return;
            }
        }
        self.actives[i].not_found = 0;
        let Some(mut b) = Batch::from_bytes(&resp.bytes) else {
            tracing::info!("batch {id}: the poll's answer is not a batch object; trying again");
            return;
        };
        let shown = format!("{} {} {}", b.status, b.completed, b.failed);
        if shown != self.actives[i].shown {
            self.actives[i].shown = shown;
            self.actives[i].status = b.status.clone();
            let age = b
                .created_at
                .map(|t| jiff::Timestamp::now().as_second() - t)
                .unwrap_or(0);
            let expires = b
                .expires_at
                .and_then(|t| jiff::Timestamp::from_second(t).ok())
                .map(|t| format!(", expires {t}"))
                .unwrap_or_default();
            tracing::info!(
                target: crate::ui::PROGRESS,
                "batch {id} ({}): {}, {}/{} done, {} failed, age {age}s{expires}",
                self.actives[i].known.model,
                b.status,
                b.completed,
                b.total,
                b.failed
            );
        }
        if !b.is_terminal() {
            return;
        }
        if b.status != "completed" {
            let why = b.error.clone().unwrap_or_else(|| "no reason given".into());
            let error = RecordError {
                kind: if b.status == "failed" {
                    ErrorKind::BadRequest
                } else {
                    ErrorKind::Transient
                },
                status: None,
                code: Some(Value::from(b.status.clone())),
                message: format!(
                    "batch {id} {}: {why}; a rerun sends the row again",
                    b.status
                ),
            };
            let mut a = self.take(i);
            self.fail_all(&mut a, Some(&id), error, true).await;
            self.close(i, a);
            return;
        }
        let inline_complete = b
            .results
            .as_ref()
            .is_some_and(|r| r.len() as u64 >= b.total);
        let lines = if inline_complete {
            b.results.take()
        } else {
            match self.paged(&id).await {
                Paged::Lines(lines) => Some(lines),
                Paged::Gated => {
                    self.payment_gate(&id);
                    return;
                }
                Paged::None => b.results.take(),
            }
        };
        // Completed without results: settlement is pending; keep polling.
        let Some(lines) = lines else {
            return;
        };
        let mut a = self.take(i);
        let lines_cost = self.deliver(&mut a, &id, &lines).await;
        reconcile(&id, lines_cost, b.cost);
        self.close(i, a);
    }

    /// The 402 gate on results: stop; credits unlock them and a rerun collects them.
    fn payment_gate(&self, id: &str) {
        self.ctx.pool.stop(StopReason::Credits(format!(
            "the results of batch {id} are computed but held until the balance covers them: \
             credits unlock the results already computed, and a rerun collects them without \
             running anything again"
        )));
    }

    /// The `…/results` pages of a batch.
    async fn paged(&self, id: &str) -> Paged {
        let mut lines = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("{}/{id}/results?limit=1000", self.ctx.settings.path);
            if let Some(c) = &cursor {
                path.push_str("&cursor=");
                path.push_str(&percent(c));
            }
            let resp = match self.ctx.client.get_raw(&path).await {
                Ok(r) => r,
                Err(_) => return Paged::None,
            };
            match resp.status {
                200 => {}
                402 => return Paged::Gated,
                _ => return Paged::None,
            }
            let Ok(page) = serde_json::from_slice::<wire::Page>(&resp.bytes) else {
                return Paged::None;
            };
            lines.extend(page.data);
            let more = page.has_more;
            cursor = page.next_cursor;
            if !more || cursor.is_none() {
                return Paged::Lines(lines);
            }
        }
    }

    fn take(&mut self, i: usize) -> Active {
        let a = &mut self.actives[i];
        Active {
            known: a.known.clone(),
            attached: std::mem::take(&mut a.attached),
            not_found: a.not_found,
            status: a.status.clone(),
            shown: a.shown.clone(),
            done: true,
        }
    }

    fn close(&mut self, i: usize, a: Active) {
        self.outcome.collected.push(a.known.r#ref.clone());
        self.actives[i] = a;
        self.actives[i].done = true;
    }

    /// Records of a completed batch's lines; rows missing from them are error records.
    /// Returns the sum of every line's `usage.cost` (`None` if a successful line had none).
    async fn deliver(&mut self, a: &mut Active, id: &str, lines: &[Box<RawValue>]) -> Option<f64> {
        let started = started_at(a.known.at);
        let mut lines_cost = Some(0.0);
        for raw in lines {
            let Ok(line) = serde_json::from_str::<Value>(raw.get()) else {
                tracing::warn!("batch {id}: a result line is not JSON; skipped");
                continue;
            };
            let (cid, decoded) = wire::decode_line(a.known.endpoint, &line);
            if let Ok(answer) = &decoded {
                let cost = answer.usage.as_ref().and_then(|u| u.cost);
                lines_cost = lines_cost.zip(cost).map(|(a, b)| a + b);
            }
            let Some(req) = cid.and_then(|c| a.attached.remove(&c)) else {
                continue;
            };
            match decoded {
                Ok(answer) => {
                    let record = record(req, id, &started, Ok(answer));
                    let _ = self.records.send(Event::Record(Box::new(record))).await;
                }
                Err(error) => self.fail_row(req, Some(id), error, true).await,
            }
        }
        let error = RecordError {
            kind: ErrorKind::ProviderError,
            status: None,
            code: None,
            message: format!(
                "missing from the results of completed batch {id}; a rerun sends the row again"
            ),
        };
        self.fail_all(a, Some(id), error, true).await;
        lines_cost
    }
}

/// Say when the lines' costs do not add up to what the batch says it cost (the audit
/// counts the lines; a difference is spend the records do not show).
fn reconcile(id: &str, lines: Option<f64>, batch: Option<f64>) {
    match (lines, batch) {
        (Some(l), Some(b)) if (l - b).abs() > 1e-9_f64.max(b.abs() * 1e-6) => tracing::warn!(
            "batch {id}: its lines cost {} but the batch says {} (usage.cost); the records \
             hold the lines' costs",
            crate::text::usd(l),
            crate::text::usd(b)
        ),
        (None, Some(b)) => tracing::warn!(
            "batch {id}: some answers carry no usage.cost; the batch as a whole cost {}",
            crate::text::usd(b)
        ),
        _ => {}
    }
}

enum Paged {
    Lines(Vec<Box<RawValue>>),
    Gated,
    None,
}

/// A cursor as a query value.
fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn started_at(at: i64) -> String {
    jiff::Timestamp::from_second(at)
        .map(timestamp)
        .unwrap_or_else(|_| timestamp(jiff::Timestamp::now()))
}

fn waiting_message(left: &[(String, String, usize)]) -> String {
    let rows: usize = left.iter().map(|(_, _, n)| n).sum();
    let which: Vec<String> = left
        .iter()
        .take(5)
        .map(|(id, status, _)| {
            if status.is_empty() {
                id.clone()
            } else {
                format!("{id} {status}")
            }
        })
        .collect();
    format!(
        "{rows} requests in {} batches are still running ({}{})",
        left.len(),
        which.join(", "),
        if left.len() > 5 { ", …" } else { "" }
    )
}
