//! The exact-match response cache: keys, entries, a bounded slot table in shared data, the
//! assembly of a complete answer from JSON or SSE, and its replay in either shape.
//!
//! Shared data can neither list nor delete keys, so entries live in a fixed table of
//! `shards x slots` keys (`sluice:cache:slot:<shard>:<slot>`). Each shard has an index
//! (`sluice:cache:index:<shard>`: hash, slot, size, expiry, last use), updated with CAS; an insert
//! claims a slot in the index first and writes the slot after, evicting the least recently used
//! entries of the shard until its count and byte budgets hold, and reclaiming expired ones. A
//! slot holds the entry's full hash, which a reader checks: a slot being rewritten reads as a
//! miss, never as someone else's answer.

use crate::openai::{Choice, Completion, Usage};
use crate::quota::{Conflict, Store};
use crate::sse::{SseEvent, SseParser};
use crate::stream::ChunkWriter;
use crate::usage::read_usage;
use serde_json::{Map, Number, Value};
use sha2::{Digest, Sha256};

/// Request fields that do not change the answer; every other field is part of the key.
pub const NOT_IN_KEY: &[&str] = &[
    "stream",
    "stream_options",
    "user",
    "metadata",
    "store",
    "service_tier",
    "safety_identifier",
    "prompt_cache_key",
];

/// A number in one canonical form: integral values as integers (so 1, 1.0 and 1e0 are one key).
fn canonical(v: &Value) -> Value {
    match v {
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Value::Number(u.into()),
            (_, Some(i), _) => Value::Number(i.into()),
            (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
                Value::Number(Number::from(f as i64))
            }
            _ => v.clone(),
        },
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        // serde_json's map is ordered by key: the serialisation is canonical.
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, v)| (k.clone(), canonical(v))).collect())
        }
        _ => v.clone(),
    }
}

/// The cache key of a request for a tenant: SHA-256 over the tenant and the canonical JSON of
/// every field of the body but [`NOT_IN_KEY`].
pub fn key(tenant: &str, body: &Value) -> [u8; 32] {
    let mut m = Map::new();
    if let Some(o) = body.as_object() {
        for (k, v) in o {
            if !NOT_IN_KEY.contains(&k.as_str()) {
                m.insert(k.clone(), canonical(v));
            }
        }
    }
    let mut h = Sha256::new();
    h.update(tenant.as_bytes());
    h.update([0u8]);
    h.update(serde_json::to_vec(&Value::Object(m)).unwrap_or_default());
    h.finalize().into()
}

/// Bounds of the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub shards: u32,
    pub slots_per_shard: u32,
    pub shard_bytes: u64,
    pub max_entry_bytes: u64,
}

impl Bounds {
    pub fn new(max_entries: u32, max_bytes: u64, max_entry_bytes: u64) -> Bounds {
        let shards = max_entries.clamp(1, 16);
        Bounds {
            shards,
            slots_per_shard: (max_entries / shards).max(1),
            shard_bytes: max_bytes / u64::from(shards),
            max_entry_bytes: max_entry_bytes.min(max_bytes / u64::from(shards)),
        }
    }

    fn shard(&self, hash: &[u8; 32]) -> u32 {
        u32::from_le_bytes([hash[0], hash[1], hash[2], hash[3]]) % self.shards
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IndexEntry {
    hash: [u8; 16],
    slot: u32,
    size: u64,
    expires: u64,
    last_used: u64,
}

const INDEX_ENTRY: usize = 16 + 4 + 8 + 8 + 8;

fn decode_index(bytes: &[u8]) -> Vec<IndexEntry> {
    bytes
        .chunks_exact(INDEX_ENTRY)
        .filter_map(|c| {
            Some(IndexEntry {
                hash: c.get(0..16)?.try_into().ok()?,
                slot: u32::from_le_bytes(c.get(16..20)?.try_into().ok()?),
                size: u64::from_le_bytes(c.get(20..28)?.try_into().ok()?),
                expires: u64::from_le_bytes(c.get(28..36)?.try_into().ok()?),
                last_used: u64::from_le_bytes(c.get(36..44)?.try_into().ok()?),
            })
        })
        .collect()
}

fn encode_index(entries: &[IndexEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * INDEX_ENTRY);
    for e in entries {
        out.extend_from_slice(&e.hash);
        out.extend_from_slice(&e.slot.to_le_bytes());
        out.extend_from_slice(&e.size.to_le_bytes());
        out.extend_from_slice(&e.expires.to_le_bytes());
        out.extend_from_slice(&e.last_used.to_le_bytes());
    }
    out
}

use crate::contract::key::{cache_index as index_key, cache_slot as slot_key};

fn short(hash: &[u8; 32]) -> [u8; 16] {
    let mut s = [0u8; 16];
    s.copy_from_slice(&hash[..16]);
    s
}

/// A stored answer: when it was stored and the complete chat.completion.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub stored_at: u64,
    pub completion: Value,
}

const MAGIC: &[u8; 4] = b"SLC1";

fn encode_slot(hash: &[u8; 32], stored_at: u64, completion_json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 32 + 8 + completion_json.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(hash);
    out.extend_from_slice(&stored_at.to_le_bytes());
    out.extend_from_slice(completion_json);
    out
}

/// A slot's entry if it holds `hash` and decodes; anything else (empty, rewritten, corrupt) is
/// `None`.
fn decode_slot(hash: &[u8; 32], bytes: &[u8]) -> Option<Entry> {
    if bytes.get(0..4)? != MAGIC || bytes.get(4..36)? != hash {
        return None;
    }
    let stored_at = u64::from_le_bytes(bytes.get(36..44)?.try_into().ok()?);
    let completion: Value = serde_json::from_slice(bytes.get(44..)?).ok()?;
    completion.get("choices")?.as_array()?;
    Some(Entry {
        stored_at,
        completion,
    })
}

/// What happened to a store attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreOutcome {
    pub stored: bool,
    pub bytes: u64,
    pub evicted: u32,
    pub expired: u32,
    pub too_large: bool,
    pub already: bool,
}

pub struct Cache<'a, S: Store> {
    pub store: &'a S,
    pub bounds: Bounds,
}

impl<S: Store> Cache<'_, S> {
    /// The live entry for `hash`, if any. A hit refreshes the entry's last use (best effort: a
    /// lost CAS race only makes the LRU order slightly older).
    pub fn lookup(&self, hash: &[u8; 32], now: u64) -> Option<Entry> {
        let shard = self.bounds.shard(hash);
        let (bytes, cas) = self.store.get(&index_key(shard));
        // Read in place: a lookup is on every request, the index can be tens of KB.
        let mut bytes = bytes?;
        let at = bytes
            .chunks_exact(INDEX_ENTRY)
            .position(|c| c.get(..16) == Some(&short(hash)[..]))?
            * INDEX_ENTRY;
        let e = decode_index(bytes.get(at..at + INDEX_ENTRY)?).pop()?;
        if e.expires <= now {
            return None;
        }
        let entry = decode_slot(hash, &self.store.get(&slot_key(shard, e.slot)).0?)?;
        if e.last_used != now {
            if let Some(last_used) = bytes.get_mut(at + 36..at + INDEX_ENTRY) {
                last_used.copy_from_slice(&now.to_le_bytes());
                let _ = self.store.set(&index_key(shard), &bytes, cas);
            }
        }
        Some(entry)
    }

    /// Stores an entry for `ttl` seconds: claims a slot in the shard index (evicting least
    /// recently used and expired entries until the budgets hold), then writes the slot.
    pub fn insert(&self, hash: &[u8; 32], entry: &Entry, ttl: u64, now: u64) -> StoreOutcome {
        let json = serde_json::to_vec(&entry.completion).unwrap_or_default();
        self.insert_json(hash, entry.stored_at, &json, ttl, now)
    }

    /// `insert` of a completion given as its JSON text (a JSON answer is stored as it came,
    /// without a re-serialisation; it must be one `is_storable` accepted).
    pub fn insert_json(
        &self,
        hash: &[u8; 32],
        stored_at: u64,
        completion_json: &[u8],
        ttl: u64,
        now: u64,
    ) -> StoreOutcome {
        let value = encode_slot(hash, stored_at, completion_json);
        let size = value.len() as u64;
        let mut out = StoreOutcome {
            bytes: size,
            ..Default::default()
        };
        if size > self.bounds.max_entry_bytes {
            out.too_large = true;
            return out;
        }
        let shard = self.bounds.shard(hash);
        for _ in 0..100 {
            let (bytes, cas) = self.store.get(&index_key(shard));
            let mut index = bytes.as_deref().map(decode_index).unwrap_or_default();
            if index
                .iter()
                .any(|e| e.hash == short(hash) && e.expires > now)
            {
                out.already = true; // an identical miss stored it first
                return out;
            }
            let mut freed: Vec<u32> = Vec::new();
            let mut expired = 0;
            index.retain(|e| {
                let keep = e.expires > now && e.hash != short(hash);
                if !keep {
                    freed.push(e.slot);
                    expired += u32::from(e.expires <= now);
                }
                keep
            });
            let mut evicted = 0;
            let slots = self.bounds.slots_per_shard as usize;
            let mut total: u64 = index.iter().map(|e| e.size).sum();
            let over = |n: usize, total: u64| n >= slots || total + size > self.bounds.shard_bytes;
            if over(index.len(), total) {
                index.sort_by_key(|e| std::cmp::Reverse(e.last_used));
                while over(index.len(), total) {
                    let Some(victim) = index.pop() else { break };
                    total -= victim.size;
                    freed.push(victim.slot);
                    evicted += 1;
                }
            }
            let mut used = vec![false; slots];
            for e in &index {
                if let Some(u) = used.get_mut(e.slot as usize) {
                    *u = true;
                }
            }
            let Some(slot) = used.iter().position(|u| !u).map(|s| s as u32) else {
                return out;
            };
            index.push(IndexEntry {
                hash: short(hash),
                slot,
                size,
                expires: now.saturating_add(ttl),
                last_used: now,
            });
            if self
                .store
                .set(&index_key(shard), &encode_index(&index), cas)
                == Err(Conflict)
            {
                continue;
            }
            // Reclaim the memory of what left the index (the slot we took is rewritten below).
            for f in freed.iter().filter(|f| **f != slot) {
                let _ = self.store.set(
                    &slot_key(shard, *f),
                    b"",
                    self.store.get(&slot_key(shard, *f)).1,
                );
            }
            let (_, slot_cas) = self.store.get(&slot_key(shard, slot));
            if self
                .store
                .set(&slot_key(shard, slot), &value, slot_cas)
                .is_err()
            {
                return out;
            }
            out.stored = true;
            out.evicted = evicted;
            out.expired = expired;
            return out;
        }
        out
    }

    /// Live entries and their bytes.
    #[cfg(test)]
    pub fn occupancy(&self, now: u64) -> (u64, u64) {
        let mut n = 0;
        let mut bytes = 0;
        for s in 0..self.bounds.shards {
            if let Some(b) = self.store.get(&index_key(s)).0 {
                for e in decode_index(&b).iter().filter(|e| e.expires > now) {
                    n += 1;
                    bytes += e.size;
                }
            }
        }
        (n, bytes)
    }
}

// ------------------------------------------------------------------ assembling an answer

/// Whether a complete answer may be stored.
fn storable(completion: &Value, store_tool_calls: bool) -> bool {
    let Some(choices) = completion.get("choices").and_then(Value::as_array) else {
        return false;
    };
    !choices.is_empty()
        && choices.iter().all(|c| {
            let finish = c.get("finish_reason").and_then(Value::as_str);
            let calls = c
                .pointer("/message/tool_calls")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty());
            matches!(finish, Some("stop") | Some("length") | Some("tool_calls"))
                && (store_tool_calls || !calls)
        })
}

/// Whether a complete JSON answer may be stored: a clean success.
pub fn is_storable(v: &Value, store_tool_calls: bool) -> bool {
    v.get("object").and_then(Value::as_str) == Some("chat.completion")
        && storable(v, store_tool_calls)
}

#[derive(Debug, Default, Clone)]
struct ChoiceAcc {
    content: String,
    reasoning: String,
    tool_calls: Vec<(String, String, String)>,
    finish: Option<String>,
}

/// Builds the complete answer from an OpenAI SSE stream as it passes (the bytes are not
/// changed or held). `finish()` gives it only for a stream that ended cleanly: `[DONE]`, a
/// finish reason on every choice, no error event.
#[derive(Debug, Default)]
pub struct Assembler {
    parser: SseParser,
    id: String,
    model: String,
    created: u64,
    choices: Vec<ChoiceAcc>,
    usage: Option<Usage>,
    done: bool,
    broken: bool,
    bytes: u64,
    max_bytes: u64,
}

impl Assembler {
    pub fn new(max_bytes: u64) -> Self {
        Assembler {
            max_bytes,
            ..Default::default()
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        if self.broken {
            return;
        }
        self.bytes += chunk.len() as u64;
        if self.bytes > self.max_bytes.saturating_mul(4) {
            // Far bigger than an entry may be: stop assembling.
            self.broken = true;
            return;
        }
        match self.parser.feed(chunk) {
            Ok(evs) => evs.into_iter().for_each(|e| self.event(e)),
            Err(_) => self.broken = true,
        }
    }

    fn event(&mut self, ev: SseEvent) {
        if ev.data == "[DONE]" {
            self.done = true;
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(&ev.data) else {
            self.broken = true;
            return;
        };
        if v.get("error").is_some() {
            self.broken = true;
            return;
        }
        if self.id.is_empty() {
            self.id = v
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            self.model = v
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            self.created = v.get("created").and_then(Value::as_u64).unwrap_or(0);
        }
        if let Some(u) = v.get("usage").filter(|u| !u.is_null()).and_then(read_usage) {
            self.usage = Some(u);
        }
        for c in v
            .get("choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let i = c.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
            if i > 127 {
                self.broken = true;
                return;
            }
            if self.choices.len() <= i {
                self.choices.resize(i + 1, ChoiceAcc::default());
            }
            let Some(acc) = self.choices.get_mut(i) else {
                return;
            };
            let d = c.get("delta");
            if let Some(t) = d.and_then(|d| d.get("content")).and_then(Value::as_str) {
                acc.content.push_str(t);
            }
            if let Some(t) = d
                .and_then(|d| d.get("reasoning_content"))
                .and_then(Value::as_str)
            {
                acc.reasoning.push_str(t);
            }
            for tc in d
                .and_then(|d| d.get("tool_calls"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let k = tc.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
                if k > 127 {
                    self.broken = true;
                    return;
                }
                if acc.tool_calls.len() <= k {
                    acc.tool_calls.resize(k + 1, Default::default());
                }
                if let Some(call) = acc.tool_calls.get_mut(k) {
                    if let Some(id) = tc.get("id").and_then(Value::as_str) {
                        call.0 = id.to_string();
                    }
                    if let Some(n) = tc.pointer("/function/name").and_then(Value::as_str) {
                        call.1 = n.to_string();
                    }
                    if let Some(a) = tc.pointer("/function/arguments").and_then(Value::as_str) {
                        call.2.push_str(a);
                    }
                }
            }
            if let Some(f) = c.get("finish_reason").and_then(Value::as_str) {
                acc.finish = Some(f.to_string());
            }
        }
    }

    /// The complete answer as a chat.completion, if the stream ended cleanly and may be stored.
    pub fn finish(&mut self, store_tool_calls: bool) -> Option<Value> {
        if let Ok(evs) = self.parser.finish() {
            evs.into_iter().for_each(|e| self.event(e));
        }
        if self.broken || !self.done || self.choices.is_empty() {
            return None;
        }
        let choices = self
            .choices
            .iter()
            .map(|c| Choice {
                content: (!c.content.is_empty() || c.tool_calls.is_empty())
                    .then(|| c.content.clone()),
                reasoning: (!c.reasoning.is_empty()).then(|| c.reasoning.clone()),
                tool_calls: c.tool_calls.clone(),
                // A reason outside OpenAI's set leaves the choice unfinished: not storable.
                finish_reason: c.finish.as_deref().and_then(|f| {
                    [
                        "stop",
                        "length",
                        "tool_calls",
                        "content_filter",
                        "function_call",
                    ]
                    .into_iter()
                    .find(|k| *k == f)
                }),
            })
            .collect();
        let v = Completion {
            id: &self.id,
            model: &self.model,
            created: self.created,
            choices,
            usage: self.usage,
        }
        .to_json();
        storable(&v, store_tool_calls).then_some(v)
    }
}

/// A stored answer as an OpenAI stream: the role, the content, the tool calls, the finish
/// reason, the usage chunk when `usage` and known, `[DONE]`.
pub fn replay_sse(completion: &Value, usage: bool) -> Vec<u8> {
    let s = |k: &str| {
        completion
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let created = completion
        .get("created")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let mut w = ChunkWriter::new(s("id"), s("model"), created);
    let mut out = Vec::new();
    for (i, c) in completion
        .get("choices")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let i = u32::try_from(i).unwrap_or(0);
        let m = c.get("message");
        let text = |k: &str| {
            m.and_then(|m| m.get(k))
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
        };
        if let Some(r) = text("reasoning_content") {
            w.reasoning(&mut out, i, r);
        }
        match text("content") {
            Some(t) => w.content(&mut out, i, t),
            None => w.delta(&mut out, i, Map::new()),
        }
        for (k, tc) in m
            .and_then(|m| m.get("tool_calls"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let f = |p: &str| tc.pointer(p).and_then(Value::as_str).unwrap_or_default();
            let id = tc.get("id").and_then(Value::as_str).unwrap_or_default();
            w.tool_call(
                &mut out,
                i,
                u32::try_from(k).unwrap_or(0),
                Some((id, f("/function/name"))),
                f("/function/arguments"),
            );
        }
        w.finish_reason(
            &mut out,
            i,
            c.get("finish_reason")
                .and_then(Value::as_str)
                .unwrap_or("stop"),
        );
    }
    if usage {
        if let Some(u) = completion.get("usage").and_then(read_usage) {
            w.usage(&mut out, &u);
        }
    }
    w.done(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::tests::MemStore;
    use crate::stream::{assemble, run_split, StreamTranslator};
    use serde_json::json;

    fn completion(text: &str) -> Value {
        json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 5, "model": "m",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}})
    }

    #[test]
    fn key_ignores_order_whitespace_numbers_and_stream_but_not_meaning() {
        let a: Value = serde_json::from_str(r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":1.0,"stream":true}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{ "temperature": 1, "messages": [ {"content":"hi", "role":"user"} ], "model": "m" , "user":"x"}"#).unwrap();
        assert_eq!(key("t", &a), key("t", &b));
        assert_ne!(key("t", &a), key("u", &a)); // tenants never share
        for change in [
            r#"{"temperature":0.5}"#,
            r#"{"seed":1}"#,
            r#"{"top_k":3}"#,
            r#"{"max_tokens":9}"#,
            r#"{"tools":[]}"#,
        ] {
            let mut c = b.clone();
            c.as_object_mut()
                .unwrap()
                .extend(serde_json::from_str::<Map<String, Value>>(change).unwrap());
            assert_ne!(key("t", &b), key("t", &c), "{change}");
        }
        let mut c = b.clone();
        c["messages"][0]["content"] = json!("hi ");
        assert_ne!(key("t", &b), key("t", &c));
    }

    #[test]
    fn store_lookup_expire() {
        let s = MemStore::default();
        let c = Cache {
            store: &s,
            bounds: Bounds::new(64, 1 << 20, 1 << 16),
        };
        let h = key("t", &json!({"model": "m"}));
        let e = Entry {
            stored_at: 100,
            completion: completion("hello"),
        };
        assert!(c.lookup(&h, 100).is_none());
        assert!(c.insert(&h, &e, 10, 100).stored);
        assert!(c.insert(&h, &e, 10, 101).already);
        assert_eq!(c.lookup(&h, 105).unwrap(), e);
        assert!(c.lookup(&h, 110).is_none());
        // an expired entry is reclaimed by the next insert into its shard
        let out = c.insert(&h, &e, 10, 111);
        assert!(out.stored && out.expired == 1);
    }

    #[test]
    fn bounded_by_bytes_with_lru_eviction() {
        let s = MemStore::default();
        let bounds = Bounds {
            shards: 1,
            slots_per_shard: 100,
            shard_bytes: 2000,
            max_entry_bytes: 2000,
        };
        let c = Cache { store: &s, bounds };
        let big = "x".repeat(500);
        let mut hashes = Vec::new();
        for i in 0..10 {
            let h = key("t", &json!({"i": i}));
            let out = c.insert(
                &h,
                &Entry {
                    stored_at: i,
                    completion: completion(&big),
                },
                1000,
                i,
            );
            assert!(out.stored);
            hashes.push(h);
            let (_, bytes) = c.occupancy(i);
            assert!(bytes <= 2000, "{bytes}");
            // keep entry 0 hot
            c.lookup(&hashes[0], i);
        }
        assert!(c.lookup(&hashes[0], 20).is_some(), "the hot entry survives");
        assert!(
            c.lookup(&hashes[1], 20).is_none(),
            "the coldest were evicted"
        );
        assert!(c.lookup(&hashes[9], 20).is_some());
        // slots that left the index hold nothing
        let total: usize = s
            .data
            .borrow()
            .iter()
            .filter(|(k, _)| k.contains(":slot:"))
            .map(|(_, (v, _))| v.len())
            .sum();
        assert!(total as u64 <= 2000);
        let too_big = Entry {
            stored_at: 0,
            completion: completion(&"y".repeat(3000)),
        };
        assert!(
            c.insert(&key("t", &json!({"big": 1})), &too_big, 10, 30)
                .too_large
        );
    }

    #[test]
    fn a_rewritten_or_corrupt_slot_is_a_miss() {
        let s = MemStore::default();
        let c = Cache {
            store: &s,
            bounds: Bounds::new(1, 1 << 20, 1 << 16),
        };
        let h = key("t", &json!({"a": 1}));
        assert!(
            c.insert(
                &h,
                &Entry {
                    stored_at: 1,
                    completion: completion("a")
                },
                100,
                1
            )
            .stored
        );
        let slot = slot_key(0, 0);
        let cas = s.get(&slot).1;
        s.set(&slot, b"SLC1garbage", cas).unwrap();
        assert!(c.lookup(&h, 2).is_none());
    }

    const STREAM: &str = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\ndata: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"h\u{e9}llo\"}}]}\n\ndata: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":1,\"total_tokens\":5}}\n\ndata: [DONE]\n\n";

    #[test]
    fn assembles_streams_at_every_split_and_only_clean_ones() {
        let b = STREAM.as_bytes();
        for cut in 0..b.len() {
            let mut a = Assembler::new(1 << 20);
            a.feed(&b[..cut]);
            a.feed(&b[cut..]);
            let v = a.finish(false).unwrap();
            assert_eq!(v["choices"][0]["message"]["content"], "héllo");
            assert_eq!(v["usage"]["prompt_tokens"], 4);
        }
        let mut a = Assembler::new(1 << 20);
        a.feed(&b[..STREAM.find("data: [DONE]").unwrap()]);
        assert!(a.finish(false).is_none(), "no [DONE]: not stored");
        let mut a = Assembler::new(1 << 20);
        a.feed(b"data: {\"error\":{\"message\":\"x\"}}\n\ndata: [DONE]\n\n");
        assert!(a.finish(false).is_none());
    }

    #[test]
    fn replays_in_both_shapes() {
        let mut a = Assembler::new(1 << 20);
        a.feed(STREAM.as_bytes());
        let v = a.finish(false).unwrap();
        struct Fixed(Vec<u8>);
        impl StreamTranslator for Fixed {
            fn feed(&mut self, _: &[u8]) -> Vec<u8> {
                Vec::new()
            }
            fn finish(&mut self) -> Vec<u8> {
                std::mem::take(&mut self.0)
            }
        }
        let ev = run_split(&mut Fixed(replay_sse(&v, true)), b"", &[]);
        let got = assemble(&ev);
        assert_eq!(got.content, "héllo");
        assert_eq!(got.finish.as_deref(), Some("stop"));
        assert_eq!(got.usage.unwrap()["total_tokens"], 5);
        assert!(got.done);
        let ev = run_split(&mut Fixed(replay_sse(&v, false)), b"", &[]);
        assert!(assemble(&ev).usage.is_none());
        let tool = json!({"id": "x", "object": "chat.completion", "created": 1, "model": "m", "choices": [{"index": 0,
            "message": {"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            "finish_reason": "tool_calls"}]});
        let got = assemble(&run_split(&mut Fixed(replay_sse(&tool, false)), b"", &[]));
        assert_eq!(got.tool_calls, vec![("c".into(), "f".into(), "{}".into())]);
        assert!(!is_storable(&tool, false));
        assert!(is_storable(&tool, true));
    }
}
