//! Replay of a stored answer as an SSE stream.

use crate::stream::ChunkWriter;
use crate::usage::read_usage;
use serde_json::{Map, Value};

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
