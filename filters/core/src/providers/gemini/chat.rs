//! OpenAI chat completions <-> Gemini `generateContent` / `streamGenerateContent?alt=sse`.
//!
//! Tool-call ids: Gemini's own `functionCall.id` is used when it sends one, else an id is made.
//! Gemini's `thoughtSignature` (which Gemini requires back on the next turn) rides inside the id
//! after [`SIGNATURE_SEP`], so a plain OpenAI client that echoes its tool calls round-trips it.

use crate::contract::path_segment;
use crate::error::GatewayError;
use crate::openai::{
    image_source, ChatRequest, Choice, Completion, Content, ContentPart, ImageSource, Message,
    ResponseFormat, ToolChoice, Usage,
};
use crate::providers::{Plan, ResponsePlan, Target, Translator, UpstreamRequest};
use crate::sse::SseEvent;
use crate::stream::{broken_event, cut_short, ChunkWriter, EventTranslator, SseStream};
use serde_json::{json, Map, Value};

const PROVIDER: &str = "gemini";

/// The OpenAI chat front on a Gemini backend.
#[derive(Debug)]
pub struct OpenAiToGemini;

pub static TRANSLATOR: OpenAiToGemini = OpenAiToGemini;

impl Translator for OpenAiToGemini {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn request(&'static self, target: &Target, body: &[u8]) -> Result<Plan, GatewayError> {
        let req = crate::openai::chat_request(body)?;
        let model = target.upstream_model(&req.model).to_string();
        let out = request(&req)?;
        let method = if req.is_stream() {
            "streamGenerateContent?alt=sse"
        } else {
            "generateContent"
        };
        let request = UpstreamRequest {
            path: format!(
                "{}/models/{}:{}",
                target.base_path,
                path_segment(&model),
                method
            ),
            headers: vec![("content-type", "application/json".to_string())],
            body: Some(serde_json::to_vec(&out).unwrap_or_default()),
        };
        Ok(Plan::chat(self, &req, model, None, request))
    }

    fn response(
        &self,
        plan: &ResponsePlan,
        body: &[u8],
        created: u64,
    ) -> Result<Vec<u8>, GatewayError> {
        response(body, plan, created)
    }

    fn stream(
        &self,
        plan: &ResponsePlan,
        created: u64,
    ) -> Box<dyn crate::stream::StreamTranslator> {
        Box::new(stream(plan, created))
    }
}
pub const SIGNATURE_SEP: &str = "__sig__";

fn push(contents: &mut Vec<(&'static str, Vec<Value>)>, role: &'static str, part: Value) {
    match contents.last_mut() {
        Some((r, parts)) if *r == role => parts.push(part),
        _ => contents.push((role, vec![part])),
    }
}

fn parts_of(content: &Content, param: &str) -> Result<Vec<Value>, GatewayError> {
    match content {
        Content::Text(s) => Ok(if s.is_empty() {
            vec![]
        } else {
            vec![json!({"text": s})]
        }),
        Content::Parts(parts) => {
            let mut out = Vec::with_capacity(parts.len());
            for (i, p) in parts.iter().enumerate() {
                let param = format!("{param}[{i}]");
                match p {
                    ContentPart::Text { text } | ContentPart::Refusal { refusal: text } => {
                        if !text.is_empty() {
                            out.push(json!({"text": text}));
                        }
                    }
                    ContentPart::ImageUrl { image_url } => match image_source(&image_url.url, &param)? {
                        ImageSource::Base64 { media_type, data } => {
                            out.push(json!({"inlineData": {"mimeType": media_type, "data": data}}))
                        }
                        ImageSource::Url(_) => {
                            return Err(GatewayError::invalid_param(
                                &param,
                                "the gemini backend needs images inline: send a base64 data URL (data:image/png;base64,...)",
                            ))
                        }
                    },
                    ContentPart::InputAudio { .. } | ContentPart::File { .. } => {
                        return Err(GatewayError::invalid_param(
                            &param,
                            "audio and file content parts are not supported by the gemini backend",
                        ))
                    }
                }
            }
            Ok(out)
        }
    }
}

/// The `thoughtSignature` Gemini accepts for a function call it did not sign itself.
const SKIP_SIGNATURE: &str = "skip_thought_signature_validator";

/// Splits a tool-call id made by [`make_call_id`] into Gemini's id and thought signature.
fn split_call_id(id: &str) -> (&str, Option<&str>) {
    match id.split_once(SIGNATURE_SEP) {
        Some((id, sig)) => (id, Some(sig)),
        None => (id, None),
    }
}

fn make_call_id(id: &str, signature: Option<&str>) -> String {
    match signature {
        Some(sig) => format!("{id}{SIGNATURE_SEP}{sig}"),
        None => id.to_string(),
    }
}

pub fn request(req: &ChatRequest) -> Result<Value, GatewayError> {
    req.refuse_unsupported(PROVIDER, true)?;
    let mut system = Vec::new();
    let mut contents: Vec<(&'static str, Vec<Value>)> = Vec::new();
    // Tool-call id -> function name, for functionResponse (Gemini wants the name).
    let mut call_names: Vec<(&str, &str)> = Vec::new();
    for (i, m) in req.messages.iter().enumerate() {
        let param = format!("messages[{i}].content");
        match m {
            Message::System { content, .. } | Message::Developer { content, .. } => {
                for p in parts_of(content, &param)? {
                    if p.get("text").is_none() {
                        return Err(GatewayError::invalid_param(
                            &param,
                            "system messages may only contain text",
                        ));
                    }
                    system.push(p);
                }
            }
            Message::User { content, .. } => {
                for p in parts_of(content, &param)? {
                    push(&mut contents, "user", p);
                }
            }
            Message::Assistant {
                content,
                tool_calls,
                ..
            } => {
                if let Some(c) = content {
                    for p in parts_of(c, &param)? {
                        push(&mut contents, "model", p);
                    }
                }
                // Gemini 3 wants the first function call of a model turn signed. A turn that
                // Gemini did not write (another provider's, or a failover mid-conversation) has
                // no signature: it gets the value Gemini documents for skipping the check.
                let unsigned_turn = !tool_calls
                    .iter()
                    .flatten()
                    .any(|c| split_call_id(&c.id).1.is_some());
                for (j, call) in tool_calls.iter().flatten().enumerate() {
                    let param = format!("messages[{i}].tool_calls[{j}].function.arguments");
                    let args = match serde_json::from_str::<Value>(&call.function.arguments) {
                        Ok(v @ Value::Object(_)) => v,
                        Ok(_) if call.function.arguments.trim().is_empty() => json!({}),
                        Err(_) if call.function.arguments.trim().is_empty() => json!({}),
                        Ok(_) => {
                            return Err(GatewayError::invalid_param(
                                &param,
                                "tool call arguments must be a JSON object",
                            ))
                        }
                        Err(e) => {
                            return Err(GatewayError::invalid_param(
                                &param,
                                format!("tool call arguments are not valid JSON: {e}"),
                            ))
                        }
                    };
                    let (id, sig) = split_call_id(&call.id);
                    let sig = sig.or((unsigned_turn && j == 0).then_some(SKIP_SIGNATURE));
                    let mut part = json!({"functionCall": {"id": id, "name": call.function.name, "args": args}});
                    if let (Some(sig), Some(o)) = (sig, part.as_object_mut()) {
                        o.insert("thoughtSignature".into(), json!(sig));
                    }
                    push(&mut contents, "model", part);
                    call_names.push((call.id.as_str(), call.function.name.as_str()));
                }
            }
            Message::Tool {
                content,
                tool_call_id,
            } => {
                let name = call_names
                    .iter()
                    .find(|(id, _)| id == tool_call_id)
                    .map(|(_, n)| *n)
                    .ok_or_else(|| {
                        GatewayError::invalid_param(
                            &format!("messages[{i}].tool_call_id"),
                            format!("tool_call_id '{tool_call_id}' does not match a tool call of an earlier assistant message"),
                        )
                    })?;
                let text = content.text();
                let response = match serde_json::from_str::<Value>(&text) {
                    Ok(v @ Value::Object(_)) => v,
                    _ => json!({"content": text}),
                };
                let (id, _) = split_call_id(tool_call_id);
                push(
                    &mut contents,
                    "user",
                    json!({"functionResponse": {"id": id, "name": name, "response": response}}),
                );
            }
        }
    }
    if contents.is_empty() {
        return Err(GatewayError::invalid_param(
            "messages",
            "the gemini backend needs at least one user or assistant message besides system messages",
        ));
    }
    let mut out = Map::new();
    out.insert(
        "contents".into(),
        Value::Array(
            contents
                .into_iter()
                .map(|(role, parts)| json!({"role": role, "parts": parts}))
                .collect(),
        ),
    );
    if !system.is_empty() {
        out.insert("systemInstruction".into(), json!({"parts": system}));
    }
    let mut gc = Map::new();
    if let Some(m) = req.max_output_tokens() {
        gc.insert("maxOutputTokens".into(), json!(m));
    }
    if let Some(t) = req.temperature {
        gc.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        gc.insert("topP".into(), json!(p));
    }
    if let Some(s) = &req.stop {
        gc.insert("stopSequences".into(), json!(s.to_vec()));
    }
    if let Some(n) = req.n {
        gc.insert("candidateCount".into(), json!(n));
    }
    if let Some(s) = req.seed {
        gc.insert("seed".into(), json!(s));
    }
    if let Some(p) = req.presence_penalty {
        gc.insert("presencePenalty".into(), json!(p));
    }
    if let Some(p) = req.frequency_penalty {
        gc.insert("frequencyPenalty".into(), json!(p));
    }
    match &req.response_format {
        None | Some(ResponseFormat::Text) => {}
        Some(ResponseFormat::JsonObject) => {
            gc.insert("responseMimeType".into(), json!("application/json"));
        }
        Some(ResponseFormat::JsonSchema { json_schema }) => {
            gc.insert("responseMimeType".into(), json!("application/json"));
            if let Some(s) = &json_schema.schema {
                gc.insert("responseJsonSchema".into(), s.clone());
            }
        }
    }
    match req.reasoning_effort.as_deref() {
        None => {}
        Some("none") => {
            gc.insert("thinkingConfig".into(), json!({"thinkingBudget": 0}));
        }
        Some(e @ ("minimal" | "low" | "medium" | "high")) => {
            let budget = match e {
                "minimal" | "low" => 1024,
                "medium" => 8192,
                _ => 24576,
            };
            gc.insert(
                "thinkingConfig".into(),
                json!({"thinkingBudget": budget, "includeThoughts": true}),
            );
        }
        Some(other) => {
            return Err(GatewayError::invalid_param(
                "reasoning_effort",
                format!(
                "'reasoning_effort' must be one of none, minimal, low, medium, high; got '{other}'"
            ),
            ))
        }
    }
    if !gc.is_empty() {
        out.insert("generationConfig".into(), Value::Object(gc));
    }
    let decls: Vec<Value> = req
        .function_tools(PROVIDER)?
        .into_iter()
        .map(|f| {
            let mut d = Map::new();
            d.insert("name".into(), json!(f.name));
            if let Some(desc) = &f.description {
                d.insert("description".into(), json!(desc));
            }
            if let Some(p) = &f.parameters {
                d.insert("parametersJsonSchema".into(), p.clone());
            }
            Value::Object(d)
        })
        .collect();
    if !decls.is_empty() {
        out.insert("tools".into(), json!([{"functionDeclarations": decls}]));
        let fc = match &req.tool_choice {
            None | Some(ToolChoice::Auto) => json!({"mode": "AUTO"}),
            Some(ToolChoice::None) => json!({"mode": "NONE"}),
            Some(ToolChoice::Required) => json!({"mode": "ANY"}),
            Some(ToolChoice::Function(name)) => {
                json!({"mode": "ANY", "allowedFunctionNames": [name]})
            }
        };
        out.insert("toolConfig".into(), json!({"functionCallingConfig": fc}));
    }
    Ok(Value::Object(out))
}

fn finish_reason(reason: &str, has_calls: bool) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            "content_filter"
        }
        _ if has_calls => "tool_calls",
        _ => "stop",
    }
}

fn read_usage(v: &Value) -> Option<Usage> {
    let u = v.get("usageMetadata")?;
    let get = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let thoughts = u.get("thoughtsTokenCount").and_then(Value::as_u64);
    Some(Usage {
        prompt_tokens: get("promptTokenCount"),
        completion_tokens: get("candidatesTokenCount").saturating_add(thoughts.unwrap_or(0)),
        cached_tokens: Some(get("cachedContentTokenCount")),
        reasoning_tokens: thoughts,
    })
}

/// One part of a candidate, read.
enum Part<'a> {
    Text(&'a str),
    Thought(&'a str),
    Call {
        id: Option<&'a str>,
        name: &'a str,
        args: String,
        signature: Option<&'a str>,
    },
    Other,
}

fn read_part(p: &Value) -> Part<'_> {
    if let Some(fc) = p.get("functionCall") {
        return Part::Call {
            id: fc.get("id").and_then(Value::as_str),
            name: fc.get("name").and_then(Value::as_str).unwrap_or_default(),
            args: serde_json::to_string(fc.get("args").unwrap_or(&json!({}))).unwrap_or_default(),
            signature: p.get("thoughtSignature").and_then(Value::as_str),
        };
    }
    match (
        p.get("text").and_then(Value::as_str),
        p.get("thought").and_then(Value::as_bool),
    ) {
        (Some(t), Some(true)) => Part::Thought(t),
        (Some(t), _) => Part::Text(t),
        _ => Part::Other,
    }
}

fn candidates(v: &Value) -> impl Iterator<Item = (u32, &Value)> {
    v.get("candidates")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(pos, c)| {
            let idx = c.get("index").and_then(Value::as_u64).unwrap_or(pos as u64);
            (u32::try_from(idx).unwrap_or(0), c)
        })
}

fn response_id(v: &Value, created: u64) -> String {
    v.get("responseId")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| format!("gemini-{created}"))
}

pub fn response(body: &[u8], plan: &ResponsePlan, created: u64) -> Result<Vec<u8>, GatewayError> {
    let v: Value = serde_json::from_slice(body)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| {
            GatewayError::bad_upstream("The gemini backend answered with a body that is not JSON.")
        })?;
    if v.get("candidates").is_none() && v.get("promptFeedback").is_none() {
        return Err(GatewayError::bad_upstream(
            "The gemini backend answered without candidates.",
        ));
    }
    let rid = response_id(&v, created);
    let mut choices: Vec<Choice> = Vec::new();
    for (idx, c) in candidates(&v) {
        let mut choice = Choice::default();
        let mut text = String::new();
        for p in c
            .pointer("/content/parts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            match read_part(p) {
                Part::Text(t) => text.push_str(t),
                Part::Thought(t) => choice.reasoning.get_or_insert_with(String::new).push_str(t),
                Part::Call {
                    id,
                    name,
                    args,
                    signature,
                } => {
                    let made = format!("call_{rid}_{idx}_{}", choice.tool_calls.len());
                    let id = make_call_id(id.unwrap_or(&made), signature);
                    choice.tool_calls.push((id, name.to_string(), args));
                }
                Part::Other => {}
            }
        }
        let reason = c
            .get("finishReason")
            .and_then(Value::as_str)
            .unwrap_or("STOP");
        choice.finish_reason = Some(finish_reason(reason, !choice.tool_calls.is_empty()));
        choice.content = if text.is_empty() && !choice.tool_calls.is_empty() {
            None
        } else {
            Some(text)
        };
        let slot = usize::try_from(idx).unwrap_or(0).min(choices.len());
        choices.insert(slot, choice);
    }
    if choices.is_empty() {
        // The prompt itself was blocked (promptFeedback.blockReason).
        choices.push(Choice {
            content: Some(String::new()),
            finish_reason: Some("content_filter"),
            ..Default::default()
        });
    }
    let id = format!("chatcmpl-{rid}");
    let model = v
        .get("modelVersion")
        .and_then(Value::as_str)
        .unwrap_or(&plan.client_model);
    let c = Completion {
        id: &id,
        model,
        created,
        choices,
        usage: read_usage(&v),
    };
    c.to_bytes()
}

struct CandidateState {
    index: u32,
    calls: u32,
    finished: bool,
}

/// Gemini SSE (each event a whole `GenerateContentResponse`) -> OpenAI chunks.
pub type Stream = SseStream<Events>;

pub fn stream(plan: &ResponsePlan, created: u64) -> Stream {
    SseStream::new(Events::new(plan, created))
}

pub struct Events {
    w: ChunkWriter,
    started: bool,
    candidates: Vec<CandidateState>,
    usage: Option<Usage>,
}

impl Events {
    fn new(plan: &ResponsePlan, created: u64) -> Self {
        Events {
            w: ChunkWriter::new(
                format!("chatcmpl-gemini-{created}"),
                plan.client_model.clone(),
                created,
            ),
            started: false,
            candidates: Vec::new(),
            usage: None,
        }
    }

    /// The state of candidate `index`, created on first sight.
    fn state(&mut self, index: u32) -> Option<&mut CandidateState> {
        if !self.candidates.iter().any(|c| c.index == index) {
            self.candidates.push(CandidateState {
                index,
                calls: 0,
                finished: false,
            });
        }
        self.candidates.iter_mut().find(|c| c.index == index)
    }
}

impl EventTranslator for Events {
    const PROVIDER: &'static str = PROVIDER;

    fn writer(&mut self) -> &mut ChunkWriter {
        &mut self.w
    }

    /// Gemini has no end-of-stream event: the answer is complete when every candidate has a
    /// finish reason.
    fn end(&mut self, out: &mut Vec<u8>) {
        if self.candidates.is_empty() || self.candidates.iter().any(|c| !c.finished) {
            self.w.error(out, &cut_short(PROVIDER));
            return;
        }
        let usage = self.usage.unwrap_or_default();
        self.w.usage(out, &usage);
        self.w.done(out);
    }

    fn event(&mut self, ev: SseEvent, out: &mut Vec<u8>) -> Result<(), GatewayError> {
        let v: Value = serde_json::from_str(&ev.data).map_err(|e| broken_event(PROVIDER, e))?;
        if let Some(e) = v.get("error") {
            let status = e
                .get("code")
                .and_then(Value::as_u64)
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or(500);
            let msg = e.get("message").and_then(Value::as_str);
            let kind = e.get("status").and_then(Value::as_str);
            return Err(crate::error::from_provider(PROVIDER, status, kind, msg));
        }
        if !v.is_object() {
            return Err(broken_event(PROVIDER, "an event that is not a JSON object"));
        }
        if !self.started {
            self.started = true;
            let created = self.w.created;
            self.w.id = format!("chatcmpl-{}", response_id(&v, created));
            if let Some(m) = v.get("modelVersion").and_then(Value::as_str) {
                self.w.model = m.to_string();
            }
        }
        if let Some(u) = read_usage(&v) {
            self.usage = Some(u);
        }
        let rid = self.w.id.trim_start_matches("chatcmpl-").to_string();
        let mut blocked = v.pointer("/promptFeedback/blockReason").is_some();
        for (idx, c) in candidates(&v) {
            blocked = false;
            for p in c
                .pointer("/content/parts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                match read_part(p) {
                    Part::Text(t) if !t.is_empty() => self.w.content(out, idx, t),
                    Part::Thought(t) if !t.is_empty() => self.w.reasoning(out, idx, t),
                    Part::Call {
                        id,
                        name,
                        args,
                        signature,
                    } => {
                        let call = self.state(idx).map_or(0, |st| {
                            st.calls += 1;
                            st.calls - 1
                        });
                        let made = format!("call_{rid}_{idx}_{call}");
                        let id = make_call_id(id.unwrap_or(&made), signature);
                        self.w.tool_call(out, idx, call, Some((&id, name)), &args);
                    }
                    _ => {}
                }
            }
            let st = self.state(idx);
            if let (Some(r), Some(st)) = (c.get("finishReason").and_then(Value::as_str), st) {
                st.finished = true;
                let has_calls = st.calls > 0;
                self.w.finish_reason(out, idx, finish_reason(r, has_calls));
            }
        }
        if blocked {
            if let Some(st) = self.state(0) {
                st.finished = true;
            }
            self.w.finish_reason(out, 0, "content_filter");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::{parse_body, validate};
    use crate::stream::{assemble, run_split};

    fn req(body: Value) -> Result<Value, GatewayError> {
        let v = parse_body(body.to_string().as_bytes()).unwrap();
        request(&validate(&v).unwrap())
    }

    fn plan() -> ResponsePlan {
        ResponsePlan {
            translator: &TRANSLATOR,
            stream: true,
            json_tool: None,
            client_model: "mock-gemini".into(),
            upstream_model: "gemini-x".into(),
        }
    }

    #[test]
    fn unsigned_function_calls_get_the_documented_skip_signature() {
        let v = req(json!({"model":"g","messages":[
            {"role":"user","content":"hi"},
            {"role":"assistant","content":null,"tool_calls":[
                {"id":"toolu_1","type":"function","function":{"name":"a","arguments":"{}"}},
                {"id":"toolu_2","type":"function","function":{"name":"b","arguments":""}}]},
            {"role":"tool","tool_call_id":"toolu_1","content":"1"},
            {"role":"tool","tool_call_id":"toolu_2","content":"2"},
            {"role":"assistant","content":null,"tool_calls":[
                {"id":"call_9__sig__REAL","type":"function","function":{"name":"a","arguments":"{}"}}]},
            {"role":"tool","tool_call_id":"call_9__sig__REAL","content":"3"}
        ]}))
        .unwrap();
        let c = v["contents"].as_array().unwrap();
        // Only the first call of an unsigned turn carries it (parallel calls share it).
        assert_eq!(c[1]["parts"][0]["thoughtSignature"], SKIP_SIGNATURE);
        assert!(c[1]["parts"][1].get("thoughtSignature").is_none());
        // A real signature is never replaced.
        assert_eq!(c[3]["parts"][0]["thoughtSignature"], "REAL");
    }

    #[test]
    fn request_mapping() {
        let v = req(json!({
            "model":"g","n":2,"max_tokens":77,"temperature":0.1,"top_p":0.8,"stop":["x","y"],"seed":5,
            "response_format":{"type":"json_schema","json_schema":{"name":"p","schema":{"type":"object","additionalProperties":false}}},
            "tools":[{"type":"function","function":{"name":"get","description":"d","parameters":{"type":"object"}}}],
            "tool_choice":{"type":"function","function":{"name":"get"}},
            "messages":[
                {"role":"system","content":"sys"},
                {"role":"user","content":[{"type":"text","text":"see"},{"type":"image_url","image_url":{"url":"data:image/jpeg;base64,/9j/"}}]},
                {"role":"assistant","content":"ok","tool_calls":[{"id":"call_1__sig__SIG","type":"function","function":{"name":"get","arguments":"{\"q\":1}"}}]},
                {"role":"tool","tool_call_id":"call_1__sig__SIG","content":"{\"temp\":20}"},
                {"role":"tool","tool_call_id":"call_1__sig__SIG","content":"plain"},
                {"role":"user","content":"more"}
            ]
        }))
        .unwrap();
        assert_eq!(v["systemInstruction"], json!({"parts":[{"text":"sys"}]}));
        let c = v["contents"].as_array().unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(
            c[0]["parts"][1],
            json!({"inlineData":{"mimeType":"image/jpeg","data":"/9j/"}})
        );
        assert_eq!(c[1]["role"], "model");
        assert_eq!(
            c[1]["parts"][1],
            json!({"functionCall":{"id":"call_1","name":"get","args":{"q":1}},"thoughtSignature":"SIG"})
        );
        assert_eq!(c[2]["role"], "user");
        assert_eq!(
            c[2]["parts"][0]["functionResponse"],
            json!({"id":"call_1","name":"get","response":{"temp":20}})
        );
        assert_eq!(
            c[2]["parts"][1]["functionResponse"]["response"],
            json!({"content":"plain"})
        );
        assert_eq!(c[2]["parts"][2], json!({"text":"more"}));
        let gc = &v["generationConfig"];
        assert_eq!(gc["maxOutputTokens"], 77);
        assert_eq!(gc["candidateCount"], 2);
        assert_eq!(gc["stopSequences"], json!(["x", "y"]));
        assert_eq!(gc["responseMimeType"], "application/json");
        assert_eq!(gc["responseJsonSchema"]["additionalProperties"], false);
        assert_eq!(
            v["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"],
            json!({"type":"object"})
        );
        assert_eq!(
            v["toolConfig"]["functionCallingConfig"],
            json!({"mode":"ANY","allowedFunctionNames":["get"]})
        );
    }

    #[test]
    fn request_refusals() {
        let e = req(
            json!({"model":"g","messages":[{"role":"tool","tool_call_id":"nope","content":"x"}]}),
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].tool_call_id"));
        let e = req(json!({"model":"g","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/a.png"}}]}]})).unwrap_err();
        assert!(e.message.contains("inline"));
        let v = req(json!({"model":"g","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"required","reasoning_effort":"low"})).unwrap();
        assert_eq!(v["toolConfig"]["functionCallingConfig"]["mode"], "ANY");
        assert_eq!(
            v["generationConfig"]["thinkingConfig"]["thinkingBudget"],
            1024
        );
        assert!(v["tools"][0]["functionDeclarations"][0]
            .get("parametersJsonSchema")
            .is_none());
    }

    #[test]
    fn json_response_with_candidates_calls_and_usage() {
        let body = json!({"candidates":[
            {"index":0,"content":{"role":"model","parts":[{"text":"why","thought":true},{"text":"Hi"},{"text":" there"}]},"finishReason":"STOP"},
            {"index":1,"content":{"role":"model","parts":[{"functionCall":{"name":"get","args":{"q":"a"}},"thoughtSignature":"S1"}]},"finishReason":"STOP"}
        ],"usageMetadata":{"promptTokenCount":7,"candidatesTokenCount":3,"thoughtsTokenCount":2,"cachedContentTokenCount":1,"totalTokenCount":12},
        "modelVersion":"gemini-2.5-flash","responseId":"r1"});
        let out: Value =
            serde_json::from_slice(&response(body.to_string().as_bytes(), &plan(), 5).unwrap())
                .unwrap();
        assert_eq!(out["id"], "chatcmpl-r1");
        assert_eq!(out["model"], "gemini-2.5-flash");
        assert_eq!(out["choices"][0]["message"]["content"], "Hi there");
        assert_eq!(out["choices"][0]["message"]["reasoning_content"], "why");
        assert_eq!(out["choices"][0]["finish_reason"], "stop");
        let call = &out["choices"][1]["message"]["tool_calls"][0];
        assert_eq!(call["id"], "call_r1_1_0__sig__S1");
        assert_eq!(call["function"]["arguments"], "{\"q\":\"a\"}");
        assert!(out["choices"][1]["message"]["content"].is_null());
        assert_eq!(out["choices"][1]["finish_reason"], "tool_calls");
        assert_eq!(out["usage"]["completion_tokens"], 5);
        assert_eq!(
            out["usage"]["completion_tokens_details"]["reasoning_tokens"],
            2
        );
        assert_eq!(out["usage"]["prompt_tokens_details"]["cached_tokens"], 1);
        for (r, f) in [
            ("MAX_TOKENS", "length"),
            ("SAFETY", "content_filter"),
            ("RECITATION", "content_filter"),
        ] {
            let b = json!({"candidates":[{"content":{"parts":[{"text":"x"}]},"finishReason":r}]});
            let out: Value =
                serde_json::from_slice(&response(b.to_string().as_bytes(), &plan(), 0).unwrap())
                    .unwrap();
            assert_eq!(out["choices"][0]["finish_reason"], f);
        }
        let b = json!({"promptFeedback":{"blockReason":"SAFETY"}});
        let out: Value =
            serde_json::from_slice(&response(b.to_string().as_bytes(), &plan(), 0).unwrap())
                .unwrap();
        assert_eq!(out["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(response(b"{}", &plan(), 0).unwrap_err().status, 502);
        assert_eq!(response(b"nope", &plan(), 0).unwrap_err().status, 502);
    }

    fn gemini_stream() -> String {
        [
            json!({"candidates":[{"content":{"role":"model","parts":[{"text":"thinking…","thought":true}]},"index":0}],"responseId":"r7","modelVersion":"gemini-x"}),
            json!({"candidates":[{"content":{"role":"model","parts":[{"text":"Grüße "}]},"index":0}],"usageMetadata":{"promptTokenCount":4},"responseId":"r7"}),
            json!({"candidates":[{"content":{"role":"model","parts":[{"text":"🌍"}]},"index":0}],"responseId":"r7"}),
            json!({"candidates":[{"content":{"role":"model","parts":[{"functionCall":{"name":"get","args":{"city":"Zürich"}}}]},"index":0}],"responseId":"r7"}),
            json!({"candidates":[{"content":{"role":"model","parts":[{"text":""}]},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":6,"totalTokenCount":10},"responseId":"r7"}),
        ]
        .iter()
        .map(|d| format!("data: {d}\r\n\r\n"))
        .collect()
    }

    #[test]
    fn stream_at_every_split_point() {
        let s = gemini_stream();
        let b = s.as_bytes();
        for cut in 0..=b.len() {
            let a = assemble(&run_split(&mut stream(&plan(), 3), b, &[cut, cut + 7]));
            assert_eq!(a.content, "Grüße 🌍");
            assert_eq!(a.reasoning, "thinking…");
            assert_eq!(
                a.tool_calls,
                vec![(
                    "call_r7_0_0".into(),
                    "get".into(),
                    "{\"city\":\"Zürich\"}".into()
                )]
            );
            assert_eq!(a.finish.as_deref(), Some("tool_calls"));
            assert_eq!(a.usage.as_ref().unwrap()["total_tokens"], 10);
            assert!(a.done && a.error.is_none());
        }
    }

    #[test]
    fn stream_cut_and_error() {
        let s = gemini_stream();
        let cut = s.rfind("data:").unwrap();
        let a = assemble(&run_split(
            &mut stream(&plan(), 3),
            &s.as_bytes()[..cut],
            &[],
        ));
        assert_eq!(a.error.unwrap()["code"], "upstream_stream_cut");
        assert!(!a.done);
        let e = format!(
            "{}data: {}\n\n",
            &s[..cut],
            json!({"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}})
        );
        let a = assemble(&run_split(&mut stream(&plan(), 3), e.as_bytes(), &[]));
        assert_eq!(a.error.unwrap()["code"], "upstream_overloaded");
    }

    #[test]
    fn stream_with_two_candidates() {
        let s: String = [
            json!({"candidates":[{"content":{"parts":[{"text":"a"}]},"index":0},{"content":{"parts":[{"text":"b"}]},"index":1}]}),
            json!({"candidates":[{"content":{"parts":[{"text":"!"}]},"finishReason":"STOP","index":0},{"content":{"parts":[{"text":"?"}]},"finishReason":"MAX_TOKENS","index":1}]}),
        ]
        .iter()
        .map(|d| format!("data: {d}\n\n"))
        .collect();
        let ev = run_split(&mut stream(&plan(), 3), s.as_bytes(), &[]);
        let mut text = ["".to_string(), "".to_string()];
        let mut fin = [None, None];
        let mut roles = 0;
        for e in &ev {
            for c in e["choices"].as_array().into_iter().flatten() {
                let i = c["index"].as_u64().unwrap() as usize;
                if c["delta"].get("role").is_some() {
                    roles += 1;
                }
                text[i].push_str(c["delta"]["content"].as_str().unwrap_or(""));
                if let Some(f) = c["finish_reason"].as_str() {
                    fin[i] = Some(f.to_string());
                }
            }
        }
        assert_eq!(roles, 2);
        assert_eq!(text, ["a!", "b?"]);
        assert_eq!(fin, [Some("stop".into()), Some("length".into())]);
        assert_eq!(ev.last().unwrap(), "[DONE]");
    }
}
