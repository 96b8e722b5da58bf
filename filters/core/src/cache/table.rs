//! The bounded slot table in shared data: index per shard, slots, LRU eviction, expiry.

use crate::quota::{Conflict, Store};
use serde_json::Value;

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
    // A chat completion, an Anthropic message or an embeddings list (each front's keys are
    // apart).
    completion
        .get("choices")
        .or_else(|| completion.get("content"))
        .or_else(|| completion.get("data"))?
        .as_array()?;
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
pub(super) fn storable(completion: &Value, store_tool_calls: bool) -> bool {
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
