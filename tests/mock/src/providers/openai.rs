//! OpenAI chat completions (and Azure, which shares the format): request validation and answers, JSON and SSE.

use super::*;

pub(super) fn validate_openai(b: &Map<String, Value>) -> Result<(), String> {
    if !b
        .get("model")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty())
    {
        return Err("you must provide a model parameter".into());
    }
    let msgs = b
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("'messages' is a required property")?;
    if msgs.is_empty() {
        return Err("'messages' must contain at least one message".into());
    }
    for (i, m) in msgs.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
        if !["system", "developer", "user", "assistant", "tool"].contains(&role) {
            return Err(format!("messages[{i}].role: invalid role '{role}'"));
        }
        if role == "tool" && !is_str(m.get("tool_call_id")) {
            return Err(format!("messages[{i}]: tool messages need tool_call_id"));
        }
    }
    if b.contains_key("stream_options") && b.get("stream").and_then(Value::as_bool) != Some(true) {
        return Err(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.".into(),
        );
    }
    Ok(())
}

pub(super) fn openai_usage(r: &Reply) -> Value {
    let out = r.output_tokens() * u64::from(r.n);
    json!({"prompt_tokens": r.input_tokens, "completion_tokens": out, "total_tokens": r.input_tokens + out,
        "prompt_tokens_details": {"cached_tokens": r.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}})
}

pub(super) fn openai_finish(r: &Reply) -> &'static str {
    if r.tool.is_some() {
        "tool_calls"
    } else if r.finish == "length" {
        "length"
    } else if r.finish == "eos" {
        "eos"
    } else {
        "stop"
    }
}

pub(super) fn openai_json(r: &Reply) -> Value {
    let choices: Vec<Value> = (0..r.n)
        .map(|i| {
            let msg = match &r.tool {
                Some((name, args)) => json!({"role":"assistant","content":null,"refusal":null,"tool_calls":[{"id":"call_mock_0","type":"function","function":{"name":name,"arguments":args.to_string()}}]}),
                None => json!({"role":"assistant","content":r.text,"refusal":null}),
            };
            json!({"index": i, "message": msg, "logprobs": null, "finish_reason": openai_finish(r)})
        })
        .collect();
    json!({"id":"chatcmpl-mock","object":"chat.completion","created":CREATED,"model":r.model,"system_fingerprint":"fp_mock","choices":choices,"usage":openai_usage(r)})
}

pub(super) fn openai_sse(r: &Reply) -> Vec<String> {
    let mut out = Vec::new();
    let chunk = |choices: Value, usage: Option<Value>| {
        let mut c = json!({"id":"chatcmpl-mock","object":"chat.completion.chunk","created":CREATED,"model":r.model,"system_fingerprint":"fp_mock","choices":choices});
        if r.include_usage {
            c["usage"] = usage.unwrap_or(Value::Null);
        }
        format!("data: {c}\n\n")
    };
    for i in 0..r.n {
        out.push(chunk(json!([{"index":i,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]), None));
        match &r.tool {
            Some((name, args)) => {
                let a = args.to_string();
                let (a1, a2) = a.split_at(a.len() / 2);
                out.push(chunk(json!([{"index":i,"delta":{"tool_calls":[{"index":0,"id":"call_mock_0","type":"function","function":{"name":name,"arguments":""}}]},"logprobs":null,"finish_reason":null}]), None));
                for part in [a1, a2] {
                    out.push(chunk(json!([{"index":i,"delta":{"tool_calls":[{"index":0,"function":{"arguments":part}}]},"logprobs":null,"finish_reason":null}]), None));
                }
            }
            None => {
                for p in pieces(&r.text) {
                    out.push(chunk(json!([{"index":i,"delta":{"content":p},"logprobs":null,"finish_reason":null}]), None));
                }
            }
        }
        out.push(chunk(
            json!([{"index":i,"delta":{},"logprobs":null,"finish_reason":openai_finish(r)}]),
            None,
        ));
    }
    if r.include_usage {
        out.push(chunk(json!([]), Some(openai_usage(r))));
    }
    out.push("data: [DONE]\n\n".into());
    out
}
