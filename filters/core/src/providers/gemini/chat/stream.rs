//! The stream: the provider's events to OpenAI chunks, incrementally.

use super::*;

pub(super) struct CandidateState {
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
