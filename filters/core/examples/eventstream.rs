//! Throughput of the AWS event-stream decoder and of the whole ConverseStream translation
//! (frames -> OpenAI chunks), over about 1 MB of text-delta frames fed in 1,400-byte network
//! reads. Prints MB/s of input for each. Run by bench/eventstream.py natively and compiled to
//! wasm32-wasip1 (the decoder as it runs inside Envoy's VM).

use sluice_core::eventstream::{encode, FrameDecoder};
use sluice_core::providers::{bedrock::converse::TRANSLATOR, ResponsePlan};
use std::time::Instant;

fn main() {
    let mut input = Vec::new();
    let frame = |kind: &str, payload: String| {
        encode(
            &[
                (":event-type", kind),
                (":content-type", "application/json"),
                (":message-type", "event"),
            ],
            payload.as_bytes(),
        )
    };
    input.extend(frame("messageStart", r#"{"role":"assistant"}"#.into()));
    let mut i = 0;
    while input.len() < 1_000_000 {
        let text = format!("word{i} and some more text of a typical delta ");
        input.extend(frame(
            "contentBlockDelta",
            format!(r#"{{"contentBlockIndex":0,"delta":{{"text":"{text}"}},"p":"abcdefgh"}}"#),
        ));
        i += 1;
    }
    input.extend(frame(
        "contentBlockStop",
        r#"{"contentBlockIndex":0}"#.into(),
    ));
    input.extend(frame("messageStop", r#"{"stopReason":"end_turn"}"#.into()));
    input.extend(frame(
        "metadata",
        r#"{"usage":{"inputTokens":5,"outputTokens":9000}}"#.into(),
    ));
    let run = |what: &str, f: &mut dyn FnMut() -> usize| {
        let start = Instant::now();
        let (mut rounds, mut units) = (0u32, 0usize);
        while start.elapsed().as_secs_f64() < 2.0 {
            units += f();
            rounds += 1;
        }
        let mbs = input.len() as f64 * f64::from(rounds) / start.elapsed().as_secs_f64() / 1e6;
        println!(
            "{what}: {mbs:.0} MB/s ({} KB stream x {rounds} rounds, {units} frames or bytes out)",
            input.len() / 1000
        );
    };
    run("event-stream decoder", &mut || {
        let mut d = FrameDecoder::default();
        let mut frames = Vec::new();
        for c in input.chunks(1400) {
            let _ = d.feed(c, &mut frames);
        }
        frames.len()
    });
    let plan = ResponsePlan {
        translator: &TRANSLATOR,
        stream: true,
        json_tool: None,
        client_model: "m".into(),
        upstream_model: "amazon.nova-pro-v1:0".into(),
        embeddings: None,
    };
    run("ConverseStream -> OpenAI chunks", &mut || {
        let mut t = plan.stream_translator(1);
        let mut n = 0;
        for c in input.chunks(1400) {
            n += t.feed(c).len();
        }
        n + t.finish().len()
    });
}
