//! Quota counters in shared data: one record per scope (a key, a project, a team) holding every
//! window and lifetime total, updated with compare-and-swap retry loops.
//!
//! Windows are fixed and aligned: minutes and days to the Unix epoch (UTC), months to the
//! calendar (UTC). Fixed windows give exact counts and an exact `retry-after` (the window's
//! end), and day and month budgets are what finance teams mean by "per day" and "per month".
//! The price is the known fixed-window burst: up to twice a per-minute limit across a minute
//! boundary. Token and spend limits are guarded by reservations: a request reserves its prompt
//! estimate plus its maximum output before it is forwarded, and is settled to its real usage.
//!
//! All arithmetic saturates: counters never wrap and never go negative.

use crate::error::GatewayError;

pub mod wire;

/// Shared data as the filter sees it: a value and its CAS token. `set` succeeds only if the key
/// is unchanged since the `get` that returned `cas` (`None`: the key was absent and still is);
/// otherwise it fails with `Err(Conflict)`.
pub trait Store {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Conflict>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conflict;

/// Window lengths (seconds); months are calendar months unless `month` is set (for tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    pub minute: u64,
    pub day: u64,
    pub month: Option<u64>,
}

impl Default for Windows {
    fn default() -> Self {
        Windows {
            minute: 60,
            day: 86_400,
            month: None,
        }
    }
}

/// Window indexes for one instant, and when each window ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub secs: u64,
    pub minute: u64,
    pub day: u64,
    pub month: u64,
    pub minute_end: u64,
    pub day_end: u64,
    pub month_end: u64,
}

impl Windows {
    pub fn at(&self, secs: u64) -> Now {
        let m = self.minute.max(1);
        let d = self.day.max(1);
        let (month, month_start, month_end) = match self.month {
            Some(len) => {
                let len = len.max(1);
                (
                    secs / len,
                    secs / len * len,
                    (secs / len + 1).saturating_mul(len),
                )
            }
            None => calendar_month(secs),
        };
        let _ = month_start;
        Now {
            secs,
            minute: secs / m,
            day: secs / d,
            month,
            minute_end: (secs / m + 1).saturating_mul(m),
            day_end: (secs / d + 1).saturating_mul(d),
            month_end,
        }
    }
}

/// (index as year*12+month, start, end) of the UTC calendar month containing `secs`.
fn calendar_month(secs: u64) -> (u64, u64, u64) {
    let days = secs / 86_400;
    let (y, m, _) = civil_from_days(days as i64);
    let idx = (y as u64).saturating_mul(12).saturating_add(m as u64 - 1);
    let start = days_from_civil(y, m, 1).max(0) as u64 * 86_400;
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    let end = days_from_civil(ny, nm, 1).max(0) as u64 * 86_400;
    (idx, start, end)
}

/// Seconds since the epoch as RFC 3339 UTC (`2026-12-02T14:32:47Z`).
pub fn rfc3339(secs: u64) -> String {
    let secs = i64::try_from(secs).unwrap_or(i64::MAX / 2);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        t / 3600,
        t % 3600 / 60,
        t % 60
    )
}

// Howard Hinnant's civil calendar algorithms (days since 1970-01-01 <-> y/m/d).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Limits of one scope; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    pub tokens_per_day: Option<u64>,
    pub micro_usd_per_day: Option<u64>,
    pub micro_usd_per_month: Option<u64>,
    pub parallel_requests: Option<u64>,
}

impl Limits {
    /// Each limit cut to `permille` thousandths (at least 1 where a limit is set): the share of
    /// a fleet budget one Envoy may spend alone while the quota service is unreachable.
    pub fn share(&self, permille: u64) -> Limits {
        let cut = |l: Option<u64>| {
            l.map(|v| {
                (u128::from(v) * u128::from(permille.min(1000)) / 1000)
                    .max(1)
                    .try_into()
                    .unwrap_or(u64::MAX)
            })
        };
        Limits {
            requests_per_minute: cut(self.requests_per_minute),
            tokens_per_minute: cut(self.tokens_per_minute),
            tokens_per_day: cut(self.tokens_per_day),
            micro_usd_per_day: cut(self.micro_usd_per_day),
            micro_usd_per_month: cut(self.micro_usd_per_month),
            parallel_requests: cut(self.parallel_requests),
        }
    }
}

/// Everything counted for one scope. Window counters belong to the window whose index is
/// stored beside them and read as zero once that window has passed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Record {
    pub minute: u64,
    pub requests_minute: u64,
    pub tokens_minute: u64,
    pub day: u64,
    pub tokens_day: u64,
    pub micro_usd_day: u64,
    pub month: u64,
    pub micro_usd_month: u64,
    pub in_flight: u64,
    pub total_requests: u64,
    pub total_tokens_in: u64,
    pub total_tokens_out: u64,
    pub total_micro_usd: u64,
    pub total_partial: u64,
    pub total_refused: u64,
}

pub const FIELDS: usize = 15;

impl Record {
    /// The fields in their stored (and wire) order.
    pub fn fields(&self) -> [u64; FIELDS] {
        [
            self.minute,
            self.requests_minute,
            self.tokens_minute,
            self.day,
            self.tokens_day,
            self.micro_usd_day,
            self.month,
            self.micro_usd_month,
            self.in_flight,
            self.total_requests,
            self.total_tokens_in,
            self.total_tokens_out,
            self.total_micro_usd,
            self.total_partial,
            self.total_refused,
        ]
    }

    pub fn encode(&self) -> Vec<u8> {
        self.fields().iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    /// A record of another length (a corrupt or foreign value) reads as empty.
    pub fn decode(bytes: &[u8]) -> Record {
        if bytes.len() != FIELDS * 8 {
            return Record::default();
        }
        let mut f = [0u64; FIELDS];
        for (slot, chunk) in f.iter_mut().zip(bytes.chunks_exact(8)) {
            *slot = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        }
        Record::from_fields(f)
    }

    pub fn from_fields(f: [u64; FIELDS]) -> Record {
        let [minute, requests_minute, tokens_minute, day, tokens_day, micro_usd_day, month, micro_usd_month, in_flight, total_requests, total_tokens_in, total_tokens_out, total_micro_usd, total_partial, total_refused] =
            f;
        Record {
            minute,
            requests_minute,
            tokens_minute,
            day,
            tokens_day,
            micro_usd_day,
            month,
            micro_usd_month,
            in_flight,
            total_requests,
            total_tokens_in,
            total_tokens_out,
            total_micro_usd,
            total_partial,
            total_refused,
        }
    }

    /// Zeroes the windows that have passed.
    pub fn roll(&mut self, now: &Now) {
        if self.minute != now.minute {
            self.minute = now.minute;
            self.requests_minute = 0;
            self.tokens_minute = 0;
        }
        if self.day != now.day {
            self.day = now.day;
            self.tokens_day = 0;
            self.micro_usd_day = 0;
        }
        if self.month != now.month {
            self.month = now.month;
            self.micro_usd_month = 0;
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `requests_per_minute`, `tokens_per_day`...
    pub limit: &'static str,
    /// The scope that refused: `key:ID`, `project:ID`, `team:ID`.
    pub scope: String,
    pub retry_after: u64,
    /// A budget (spend, daily tokens) rather than a rate window.
    pub budget: bool,
    /// The request alone is larger than the limit: waiting does not help.
    pub too_large: bool,
}

impl Refusal {
    pub fn reason(&self) -> &'static str {
        self.limit
    }

    pub fn to_error(&self) -> GatewayError {
        let what = self.limit.replace('_', " ");
        let mut e = if self.budget {
            GatewayError::new(
                429,
                "insufficient_quota",
                format!(
                    "You exceeded the {what} budget of {}. It resets in {} s.",
                    self.scope, self.retry_after
                ),
            )
            .with_code("insufficient_quota")
        } else if self.too_large {
            GatewayError::new(
                429,
                "tokens",
                format!(
                    "Request too large for the {what} limit of {}: lower max_tokens or the prompt.",
                    self.scope
                ),
            )
            .with_code("rate_limit_exceeded")
        } else {
            GatewayError::new(
                429,
                "requests",
                format!(
                    "Rate limit reached: {what} of {}. Retry in {} s.",
                    self.scope, self.retry_after
                ),
            )
            .with_code("rate_limit_exceeded")
        };
        e.retry_after = Some(self.retry_after);
        e
    }
}

/// What one request asks of a scope before it is forwarded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ask {
    pub tokens: u64,
    pub micro_usd: u64,
}

/// Checks `ask` against `limits` on `rec` (already rolled) and adds it when it fits.
pub fn admit(
    rec: &mut Record,
    limits: &Limits,
    ask: Ask,
    now: &Now,
    scope: &str,
) -> Result<(), Refusal> {
    let refuse = |limit, retry_after: u64, budget, too_large| Refusal {
        limit,
        scope: scope.to_string(),
        retry_after: retry_after.max(1),
        budget,
        too_large,
    };
    let to_minute = now.minute_end.saturating_sub(now.secs);
    let to_day = now.day_end.saturating_sub(now.secs);
    let to_month = now.month_end.saturating_sub(now.secs);
    if let Some(l) = limits.parallel_requests {
        if rec.in_flight >= l {
            return Err(refuse("parallel_requests", 1, false, false));
        }
    }
    if let Some(l) = limits.requests_per_minute {
        if rec.requests_minute >= l {
            return Err(refuse("requests_per_minute", to_minute, false, false));
        }
    }
    // (limit, its value, used, wanted, seconds to the window's end, is a budget)
    type Check = (&'static str, Option<u64>, u64, u64, u64, bool);
    let checks: [Check; 4] = [
        (
            "tokens_per_minute",
            limits.tokens_per_minute,
            rec.tokens_minute,
            ask.tokens,
            to_minute,
            false,
        ),
        (
            "tokens_per_day",
            limits.tokens_per_day,
            rec.tokens_day,
            ask.tokens,
            to_day,
            true,
        ),
        (
            "usd_per_day",
            limits.micro_usd_per_day,
            rec.micro_usd_day,
            ask.micro_usd,
            to_day,
            true,
        ),
        (
            "usd_per_month",
            limits.micro_usd_per_month,
            rec.micro_usd_month,
            ask.micro_usd,
            to_month,
            true,
        ),
    ];
    for (name, limit, used, want, retry, budget) in checks {
        if let Some(l) = limit {
            if want > l && !budget {
                return Err(refuse(name, retry, budget, true));
            }
            if used.saturating_add(want) > l {
                return Err(refuse(name, retry, budget, false));
            }
        }
    }
    rec.in_flight = rec.in_flight.saturating_add(1);
    rec.requests_minute = rec.requests_minute.saturating_add(1);
    rec.tokens_minute = rec.tokens_minute.saturating_add(ask.tokens);
    rec.tokens_day = rec.tokens_day.saturating_add(ask.tokens);
    rec.micro_usd_day = rec.micro_usd_day.saturating_add(ask.micro_usd);
    rec.micro_usd_month = rec.micro_usd_month.saturating_add(ask.micro_usd);
    rec.total_requests = rec.total_requests.saturating_add(1);
    Ok(())
}

/// The real cost of a request, known after its response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Actual {
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub micro_usd: u64,
    /// Usage was not reported (a cut stream): what is charged is an estimate.
    pub partial: bool,
}

/// Replaces a reservation by the real cost: windows that are still current get the
/// difference (never below zero); lifetime totals get the real cost.
pub fn settle(rec: &mut Record, reserved: Ask, reserved_at: &Now, actual: Actual, now: &Now) {
    rec.roll(now);
    let tokens = actual.tokens_in.saturating_add(actual.tokens_out);
    let adjust = |v: &mut u64, reserved: u64, real: u64| {
        *v = v.saturating_sub(reserved).saturating_add(real);
    };
    if rec.minute == reserved_at.minute {
        adjust(&mut rec.tokens_minute, reserved.tokens, tokens);
    }
    if rec.day == reserved_at.day {
        adjust(&mut rec.tokens_day, reserved.tokens, tokens);
        adjust(&mut rec.micro_usd_day, reserved.micro_usd, actual.micro_usd);
    }
    if rec.month == reserved_at.month {
        adjust(
            &mut rec.micro_usd_month,
            reserved.micro_usd,
            actual.micro_usd,
        );
    }
    rec.in_flight = rec.in_flight.saturating_sub(1);
    rec.total_tokens_in = rec.total_tokens_in.saturating_add(actual.tokens_in);
    rec.total_tokens_out = rec.total_tokens_out.saturating_add(actual.tokens_out);
    rec.total_micro_usd = rec.total_micro_usd.saturating_add(actual.micro_usd);
    if actual.partial {
        rec.total_partial = rec.total_partial.saturating_add(1);
    }
}

/// Applies `f` to the record at `key` with a CAS retry loop. `f` may refuse; a refusal leaves
/// the record as it was.
pub fn update<S: Store, T>(
    store: &S,
    key: &str,
    now: &Now,
    mut f: impl FnMut(&mut Record) -> Result<T, Refusal>,
) -> Result<(T, Record), Refusal> {
    // Bounded: under heavy contention a loser retries; 1000 tries are never reached in practice.
    for _ in 0..1000 {
        let (bytes, cas) = store.get(key);
        let mut rec = bytes.as_deref().map(Record::decode).unwrap_or_default();
        rec.roll(now);
        let out = f(&mut rec)?;
        if store.set(key, &rec.encode(), cas).is_ok() {
            return Ok((out, rec));
        }
    }
    Err(Refusal {
        limit: "contention",
        scope: key.to_string(),
        retry_after: 1,
        budget: false,
        too_large: false,
    })
}

/// One scope of a request: where its record lives and its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// `key`, `project` or `team`.
    pub kind: &'static str,
    /// The key id, project or team name.
    pub id: String,
    /// Where the record lives in shared data (local mode).
    pub key: String,
    /// How refusals name it: `key k1`, `team t`.
    pub name: String,
    pub limits: Limits,
}

/// Admits a request in every scope or in none: a refusal rolls back what was already added.
/// Returns the records after admission (for the rate-limit headers).
pub fn admit_all<S: Store>(
    store: &S,
    scopes: &[Scope],
    ask: Ask,
    now: &Now,
) -> Result<Vec<Record>, Refusal> {
    let mut done: Vec<Record> = Vec::with_capacity(scopes.len());
    for (i, s) in scopes.iter().enumerate() {
        match update(store, &s.key, now, |rec| {
            admit(rec, &s.limits, ask, now, &s.name)
        }) {
            Ok(((), rec)) => done.push(rec),
            Err(refusal) => {
                for undo in scopes.iter().take(i) {
                    let _ = update(store, &undo.key, now, |rec| {
                        settle(rec, ask, now, Actual::default(), now);
                        rec.total_requests = rec.total_requests.saturating_sub(1);
                        rec.requests_minute = rec.requests_minute.saturating_sub(1);
                        Ok(())
                    });
                }
                let _ = update(store, &s.key, now, |rec| {
                    rec.total_refused = rec.total_refused.saturating_add(1);
                    Ok(())
                });
                return Err(refusal);
            }
        }
    }
    Ok(done)
}

pub fn settle_all<S: Store>(
    store: &S,
    scopes: &[Scope],
    reserved: Ask,
    reserved_at: &Now,
    actual: Actual,
    now: &Now,
) {
    for s in scopes {
        let _ = update(store, &s.key, now, |rec| {
            settle(rec, reserved, reserved_at, actual, now);
            Ok(())
        });
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;

    /// An in-memory Store with real CAS semantics; `fail_next` makes writes conflict.
    #[derive(Default)]
    pub struct MemStore {
        pub data: RefCell<HashMap<String, (Vec<u8>, u32)>>,
        pub fail_next: RefCell<u32>,
    }

    impl Store for MemStore {
        fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
            match self.data.borrow().get(key) {
                Some((v, c)) => (Some(v.clone()), Some(*c)),
                None => (None, None),
            }
        }
        fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Conflict> {
            if *self.fail_next.borrow() > 0 {
                *self.fail_next.borrow_mut() -= 1;
                return Err(Conflict);
            }
            let mut d = self.data.borrow_mut();
            let cur = d.get(key).map(|(_, c)| *c);
            // As the host adapter does: None = create only if still absent.
            if cas != cur {
                return Err(Conflict);
            }
            let next = cur.unwrap_or(0) + 1;
            d.insert(key.to_string(), (value.to_vec(), next));
            Ok(())
        }
    }

    fn scope(name: &str, limits: Limits) -> Scope {
        Scope {
            kind: "key",
            id: name.to_string(),
            key: format!("test:{name}"),
            name: name.to_string(),
            limits,
        }
    }

    #[test]
    fn calendar_months() {
        // 2024-02-29T12:00:00Z
        let (idx, start, end) = calendar_month(1_709_208_000);
        assert_eq!(idx, 2024 * 12 + 1);
        assert_eq!(start, 1_706_745_600); // 2024-02-01
        assert_eq!(end, 1_709_251_200); // 2024-03-01
        let (idx, _, end) = calendar_month(1_735_689_599); // 2024-12-31T23:59:59Z
        assert_eq!(idx, 2024 * 12 + 11);
        assert_eq!(end, 1_735_689_600); // 2025-01-01
    }

    #[test]
    fn record_round_trip_and_corrupt_values() {
        let r = Record {
            minute: 1,
            total_micro_usd: u64::MAX,
            in_flight: 3,
            ..Default::default()
        };
        assert_eq!(Record::decode(&r.encode()), r);
        assert_eq!(Record::decode(b"garbage"), Record::default());
    }

    #[test]
    fn requests_per_minute_is_exact_and_rolls_over() {
        let store = MemStore::default();
        let w = Windows {
            minute: 10,
            day: 100,
            month: Some(1000),
        };
        let s = [scope(
            "key:a",
            Limits {
                requests_per_minute: Some(3),
                ..Default::default()
            },
        )];
        let t0 = w.at(20);
        for _ in 0..3 {
            admit_all(&store, &s, Ask::default(), &t0).unwrap();
        }
        let r = admit_all(&store, &s, Ask::default(), &w.at(25)).unwrap_err();
        assert_eq!(
            (r.limit, r.retry_after, r.budget),
            ("requests_per_minute", 5, false)
        );
        admit_all(&store, &s, Ask::default(), &w.at(30)).unwrap();
    }

    #[test]
    fn reservations_bound_tokens_and_settle_to_actual() {
        let store = MemStore::default();
        let w = Windows::default();
        let now = w.at(1000);
        let s = [scope(
            "team:t",
            Limits {
                tokens_per_minute: Some(100),
                ..Default::default()
            },
        )];
        let ask = Ask {
            tokens: 40,
            micro_usd: 0,
        };
        admit_all(&store, &s, ask, &now).unwrap();
        admit_all(&store, &s, ask, &now).unwrap();
        // A third in flight would pass 100 if reservations were not counted.
        assert_eq!(
            admit_all(&store, &s, ask, &now).unwrap_err().limit,
            "tokens_per_minute"
        );
        settle_all(
            &store,
            &s,
            ask,
            &now,
            Actual {
                tokens_in: 5,
                tokens_out: 5,
                ..Default::default()
            },
            &now,
        );
        admit_all(&store, &s, ask, &now).unwrap();
        let rec = Record::decode(&store.get("test:team:t").0.unwrap());
        assert_eq!(rec.tokens_minute, 90);
        assert_eq!(rec.in_flight, 2);
        assert_eq!(rec.total_tokens_in, 5);
    }

    #[test]
    fn a_refusal_in_one_scope_rolls_back_the_others() {
        let store = MemStore::default();
        let now = Windows::default().at(5);
        let key = scope("key:k", Limits::default());
        let team = scope(
            "team:t",
            Limits {
                micro_usd_per_day: Some(10),
                ..Default::default()
            },
        );
        let r = admit_all(
            &store,
            &[key.clone(), team.clone()],
            Ask {
                tokens: 1,
                micro_usd: 11,
            },
            &now,
        )
        .unwrap_err();
        assert!(r.budget && r.limit == "usd_per_day");
        assert_eq!(r.to_error().code.as_deref(), Some("insufficient_quota"));
        let k = Record::decode(&store.get(&key.key).0.unwrap());
        assert_eq!(
            (
                k.in_flight,
                k.requests_minute,
                k.tokens_minute,
                k.total_requests
            ),
            (0, 0, 0, 0)
        );
        let t = Record::decode(&store.get(&team.key).0.unwrap());
        assert_eq!(t.total_refused, 1);
    }

    #[test]
    fn cas_conflicts_are_retried() {
        let store = MemStore::default();
        let now = Windows::default().at(5);
        *store.fail_next.borrow_mut() = 5;
        let s = [scope("key:k", Limits::default())];
        admit_all(&store, &s, Ask::default(), &now).unwrap();
        assert_eq!(
            Record::decode(&store.get("test:key:k").0.unwrap()).total_requests,
            1
        );
    }

    #[test]
    fn settling_never_goes_negative_nor_wraps() {
        let now = Windows::default().at(5);
        let mut rec = Record {
            tokens_minute: 3,
            total_tokens_in: u64::MAX - 1,
            ..Default::default()
        };
        rec.roll(&now);
        rec.tokens_minute = 3;
        settle(
            &mut rec,
            Ask {
                tokens: 100,
                micro_usd: 7,
            },
            &now,
            Actual {
                tokens_in: 5,
                ..Default::default()
            },
            &now,
        );
        assert_eq!(rec.tokens_minute, 5);
        assert_eq!(rec.micro_usd_day, 0);
        assert_eq!(rec.in_flight, 0);
        assert_eq!(rec.total_tokens_in, u64::MAX);
    }

    #[test]
    fn a_request_larger_than_a_rate_limit_is_too_large() {
        let now = Windows::default().at(5);
        let mut rec = Record::default();
        rec.roll(&now);
        let l = Limits {
            tokens_per_minute: Some(10),
            ..Default::default()
        };
        let r = admit(
            &mut rec,
            &l,
            Ask {
                tokens: 11,
                micro_usd: 0,
            },
            &now,
            "key:k",
        )
        .unwrap_err();
        assert!(r.too_large);
        assert!(r.to_error().message.contains("too large"));
    }

    #[test]
    fn parallel_limit() {
        let store = MemStore::default();
        let now = Windows::default().at(5);
        let s = [scope(
            "key:p",
            Limits {
                parallel_requests: Some(2),
                ..Default::default()
            },
        )];
        admit_all(&store, &s, Ask::default(), &now).unwrap();
        admit_all(&store, &s, Ask::default(), &now).unwrap();
        assert_eq!(
            admit_all(&store, &s, Ask::default(), &now)
                .unwrap_err()
                .limit,
            "parallel_requests"
        );
        settle_all(&store, &s, Ask::default(), &now, Actual::default(), &now);
        admit_all(&store, &s, Ask::default(), &now).unwrap();
    }
}
