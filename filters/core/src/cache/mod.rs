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
//!
//! - [`key`]: what a request's entry is keyed on.
//! - [`table`]: the slot table, lookups, inserts and eviction.
//! - [`assemble`]: a complete answer from JSON or SSE.
//! - [`replay`]: a stored answer as SSE.
//! - [`messages`]: the same for Anthropic messages (the Messages front): key namespace,
//!   assembly from an event stream, replay as one.

mod assemble;
mod key;
mod messages;
mod replay;
mod table;

pub use assemble::*;
pub use key::*;
pub use messages::*;
pub use replay::*;
pub use table::*;

use serde_json::Value;

/// The answer of one request as it streams past, assembled for storing: chat completion
/// chunks, or an Anthropic event stream (the Messages front).
#[derive(Debug)]
pub enum Assembling {
    Chat(Assembler),
    Messages(MessageAssembler),
}

impl Assembling {
    pub fn new(messages: bool, max_bytes: u64) -> Self {
        if messages {
            Assembling::Messages(MessageAssembler::new(max_bytes))
        } else {
            Assembling::Chat(Assembler::new(max_bytes))
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        match self {
            Assembling::Chat(a) => a.feed(chunk),
            Assembling::Messages(a) => a.feed(chunk),
        }
    }

    pub fn finish(&mut self, store_tool_calls: bool) -> Option<Value> {
        match self {
            Assembling::Chat(a) => a.finish(store_tool_calls),
            Assembling::Messages(a) => a.finish(store_tool_calls),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::key::cache_slot as slot_key;
    use crate::quota::tests::MemStore;
    use crate::quota::Store;
    use crate::stream::{assemble, run_split, StreamTranslator};
    use serde_json::json;
    use serde_json::{Map, Value};

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
