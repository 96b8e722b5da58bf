//! `POST /v1/embeddings` on every backend that has embeddings. The request was checked by the
//! route role (`openai::embeddings::validate`); each translator reads it again into its own
//! body, and writes the provider's vectors back as OpenAI's list (float or base64).
//!
//! - OpenAI and OpenAI-compatible servers, Azure: pass-through (model renamed when mapped).
//! - Gemini: `models/{m}:batchEmbedContents` (no token count in the answer: estimated).
//! - Vertex AI: `google/models/{m}:predict` (`instances[].content`; counts in `statistics`).
//! - Bedrock: InvokeModel on Titan (`inputText`, one input per call) and Cohere (`texts`).
//! - Anthropic has no embeddings: a 400 that says so.

use crate::contract::path_segment;
use crate::error::GatewayError;
use crate::openai::embeddings::{self, EmbeddingsRequest};
use crate::providers::{
    EmbeddingsPlan, Plan, ResponsePlan, Target, Translator, UpstreamError, UpstreamRequest,
};
use crate::stream::StreamTranslator;
use serde_json::{json, Value};

/// The wire format of one family of embeddings APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    OpenAi,
    Azure,
    Gemini,
    Vertex,
    Bedrock,
    None(&'static str),
}

#[derive(Debug)]
pub struct Embeddings(Wire);

pub static OPENAI: Embeddings = Embeddings(Wire::OpenAi);
pub static AZURE: Embeddings = Embeddings(Wire::Azure);
pub static GEMINI: Embeddings = Embeddings(Wire::Gemini);
pub static VERTEX: Embeddings = Embeddings(Wire::Vertex);
pub static BEDROCK: Embeddings = Embeddings(Wire::Bedrock);
pub static ANTHROPIC: Embeddings = Embeddings(Wire::None("anthropic"));

fn request_of(body: &[u8]) -> Result<(Value, EmbeddingsRequest), GatewayError> {
    let v = crate::openai::parse_body(body)?;
    let req = embeddings::validate(&v)?;
    Ok((v, req))
}

fn set(v: &mut Value, key: &str, value: Value) {
    if let Some(o) = v.as_object_mut() {
        o.insert(key.to_string(), value);
    }
}

fn json_body(v: &Value) -> Option<Vec<u8>> {
    Some(serde_json::to_vec(v).unwrap_or_default())
}

fn malformed(provider: &str) -> GatewayError {
    GatewayError::bad_upstream(format!(
        "The backend ({provider}) answered the embeddings request with a body the gateway could not read."
    ))
}

/// Bedrock's embedding model families.
fn bedrock_cohere(model: &str) -> bool {
    model.contains("cohere.embed")
}

impl Translator for Embeddings {
    fn provider(&self) -> &'static str {
        match self.0 {
            Wire::OpenAi => "openai",
            Wire::Azure => "azure",
            Wire::Gemini => "gemini",
            Wire::Vertex => "vertex",
            Wire::Bedrock => "bedrock",
            Wire::None(p) => p,
        }
    }

    fn request(&'static self, target: &Target, body: &[u8]) -> Result<Plan, GatewayError> {
        let (v, req) = request_of(body)?;
        let input_tokens = crate::usage::estimate_embedding_tokens(&v);
        let model = target.upstream_model(&req.model).to_string();
        let provider = self.provider();
        let (path, out) = match self.0 {
            Wire::None(p) => {
                return Err(GatewayError::invalid_param(
                    "model",
                    format!(
                        "The model '{}' is served by {p}, which has no embeddings endpoint.",
                        crate::contract::escape_for_header(&req.model)
                    ),
                )
                .with_code("model_not_supported"))
            }
            Wire::OpenAi | Wire::Azure => {
                let path = super::openai_compat::chat::path(
                    target,
                    &model,
                    self.0 == Wire::Azure,
                    "embeddings",
                );
                let out = if model == req.model {
                    None
                } else {
                    let mut v = v;
                    if let Some(o) = v.as_object_mut() {
                        o.insert("model".into(), Value::String(model.clone()));
                    }
                    json_body(&v)
                };
                (path, out)
            }
            Wire::Gemini => {
                let texts = req.inputs.texts(provider)?;
                let name = format!("models/{model}");
                let requests: Vec<Value> = texts
                    .iter()
                    .map(|t| {
                        let mut r = json!({"model": name, "content": {"parts": [{"text": t}]}});
                        if let Some(d) = req.dimensions {
                            set(&mut r, "outputDimensionality", json!(d));
                        }
                        r
                    })
                    .collect();
                (
                    format!(
                        "{}/models/{}:batchEmbedContents",
                        target.base_path,
                        path_segment(&model)
                    ),
                    json_body(&json!({ "requests": requests })),
                )
            }
            Wire::Vertex => {
                let texts = req.inputs.texts(provider)?;
                let instances: Vec<Value> = texts.iter().map(|t| json!({"content": t})).collect();
                let mut b = json!({ "instances": instances });
                if let Some(d) = req.dimensions {
                    set(&mut b, "parameters", json!({"outputDimensionality": d}));
                }
                (
                    format!(
                        "{}/google/models/{}:predict",
                        target.base_path,
                        path_segment(&model)
                    ),
                    json_body(&b),
                )
            }
            Wire::Bedrock => {
                let texts = req.inputs.texts(provider)?;
                let b = if bedrock_cohere(&model) {
                    if req.dimensions.is_some() {
                        return Err(GatewayError::invalid_param(
                            "dimensions",
                            "Cohere's embeddings on Bedrock have a fixed size: leave 'dimensions' out.",
                        ));
                    }
                    json!({"texts": texts, "input_type": "search_document", "embedding_types": ["float"]})
                } else {
                    let [text] = texts else {
                        return Err(GatewayError::invalid_param(
                            "input",
                            "Titan embeddings on Bedrock take one input per request: send a string or a one-item array.",
                        ));
                    };
                    let mut b = json!({"inputText": text, "normalize": true});
                    if let Some(d) = req.dimensions {
                        set(&mut b, "dimensions", json!(d));
                    }
                    b
                };
                (
                    format!("{}/model/{}/invoke", target.base_path, path_segment(&model)),
                    json_body(&b),
                )
            }
        };
        let request = UpstreamRequest {
            path,
            headers: vec![
                ("content-type", "application/json".to_string()),
                ("accept", "application/json".to_string()),
            ],
            body: out,
        };
        let mut plan = Plan::forwarded(self, req.model.clone(), model, false, request);
        plan.response.embeddings = Some(EmbeddingsPlan {
            base64: req.base64,
            inputs: req.inputs.len(),
            input_tokens,
        });
        Ok(plan)
    }

    fn response(
        &self,
        plan: &ResponsePlan,
        body: &[u8],
        _created: u64,
    ) -> Result<Vec<u8>, GatewayError> {
        let provider = self.provider();
        let v: Value = serde_json::from_slice(body).map_err(|_| malformed(provider))?;
        let ep = plan.embeddings.unwrap_or(EmbeddingsPlan {
            base64: false,
            inputs: 0,
            input_tokens: 0,
        });
        let count = |p: &str| v.pointer(p).and_then(Value::as_u64);
        let (vectors, tokens): (Option<Vec<Vec<f64>>>, Option<u64>) = match self.0 {
            Wire::OpenAi | Wire::Azure => {
                // Pass-through, checked: a list of as many embeddings as inputs.
                let n = v.get("data").and_then(Value::as_array).map(Vec::len);
                if v.get("object").and_then(Value::as_str) != Some("list") || n != Some(ep.inputs) {
                    return Err(malformed(provider));
                }
                return Ok(body.to_vec());
            }
            Wire::Gemini => (
                v.get("embeddings").and_then(Value::as_array).and_then(|a| {
                    a.iter()
                        .map(|e| e.get("values").and_then(embeddings::read_vector))
                        .collect()
                }),
                None,
            ),
            Wire::Vertex => {
                let preds = v.get("predictions").and_then(Value::as_array);
                let tokens = preds.map(|p| {
                    p.iter()
                        .filter_map(|e| e.pointer("/embeddings/statistics/token_count"))
                        .filter_map(Value::as_f64)
                        .map(|t| t.max(0.0) as u64)
                        .sum()
                });
                (
                    preds.and_then(|p| {
                        p.iter()
                            .map(|e| {
                                e.pointer("/embeddings/values")
                                    .and_then(embeddings::read_vector)
                            })
                            .collect()
                    }),
                    tokens,
                )
            }
            Wire::Bedrock => {
                if let Some(one) = v.get("embedding").and_then(embeddings::read_vector) {
                    (Some(vec![one]), count("/inputTextTokenCount"))
                } else {
                    let list = v
                        .get("embeddings")
                        .map(|e| e.get("float").unwrap_or(e))
                        .and_then(Value::as_array);
                    (
                        list.and_then(|l| l.iter().map(embeddings::read_vector).collect()),
                        None,
                    )
                }
            }
            Wire::None(_) => (None, None),
        };
        let vectors = vectors
            .filter(|vs| vs.len() == ep.inputs)
            .ok_or_else(|| malformed(provider))?;
        let tokens = tokens
            .filter(|t| *t <= crate::usage::MAX_TOKENS_PER_REQUEST)
            .unwrap_or(ep.input_tokens);
        Ok(embeddings::answer(
            &plan.client_model,
            &vectors,
            tokens,
            ep.base64,
        ))
    }

    fn stream(&self, _plan: &ResponsePlan, _created: u64) -> Box<dyn StreamTranslator> {
        Box::new(NoStream(malformed(self.provider())))
    }

    fn error(&self, e: UpstreamError) -> GatewayError {
        if self.0 == Wire::Bedrock {
            return super::bedrock::converse::bedrock_error(e);
        }
        super::provider_error(self.provider(), e.status, e.body, e.retry_after)
    }

    fn passthrough(&self) -> bool {
        matches!(self.0, Wire::OpenAi | Wire::Azure)
    }
}

/// Embeddings never stream: a stream-shaped answer ends in the error.
struct NoStream(GatewayError);

impl StreamTranslator for NoStream {
    fn feed(&mut self, _chunk: &[u8]) -> Vec<u8> {
        Vec::new()
    }

    fn finish(&mut self) -> Vec<u8> {
        self.0.body()
    }
}

#[cfg(test)]
mod tests {
    use crate::backend::Backend;
    use crate::providers::{ClientApi, ClientHints, Plan};
    use serde_json::{json, Value};

    fn plan(md: Value, body: Value) -> Result<Plan, crate::GatewayError> {
        let b = Backend::from_json(&md).unwrap();
        b.plan_for(
            ClientApi::OpenAiEmbeddings,
            &serde_json::to_vec(&body).unwrap(),
            &ClientHints::default(),
        )
    }

    fn sent(p: &Plan) -> Value {
        serde_json::from_slice(p.request.body.as_deref().unwrap()).unwrap()
    }

    fn answer(p: &Plan, body: Value) -> Value {
        let out = p
            .response
            .translate_json(&serde_json::to_vec(&body).unwrap(), 0)
            .unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn openai_and_azure_pass_through() {
        let p = plan(
            json!({"provider": "openai"}),
            json!({"model": "e", "input": "hi"}),
        )
        .unwrap();
        assert_eq!(p.request.path, "/v1/embeddings");
        assert!(
            p.request.body.is_none(),
            "the client's bytes go as they are"
        );
        let ok = json!({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.1]}], "model": "e", "usage": {"prompt_tokens": 1, "total_tokens": 1}});
        assert_eq!(answer(&p, ok.clone()), ok);
        assert!(p
            .response
            .translate_json(b"{\"object\":\"list\",\"data\":[]}", 0)
            .is_err());
        let p = plan(
            json!({"provider": "azure", "models": {"e": "dep-1"}, "api_version": "2024-10-21"}),
            json!({"model": "e", "input": ["a", "b"]}),
        )
        .unwrap();
        assert_eq!(
            p.request.path,
            "/openai/deployments/dep-1/embeddings?api-version=2024-10-21"
        );
        assert_eq!(sent(&p)["model"], "dep-1");
    }

    #[test]
    fn gemini_batch_embeds_and_answers_estimate_usage() {
        let p = plan(
            json!({"provider": "gemini", "models": {"e": "text-embedding-004"}}),
            json!({"model": "e", "input": ["a b", "c"], "dimensions": 4, "encoding_format": "base64"}),
        )
        .unwrap();
        assert_eq!(
            p.request.path,
            "/v1beta/models/text-embedding-004:batchEmbedContents"
        );
        let b = sent(&p);
        assert_eq!(b["requests"][1]["content"]["parts"][0]["text"], "c");
        assert_eq!(b["requests"][0]["model"], "models/text-embedding-004");
        assert_eq!(b["requests"][0]["outputDimensionality"], 4);
        let v = answer(
            &p,
            json!({"embeddings": [{"values": [0.5, 0.25]}, {"values": [1.0, 0.0]}]}),
        );
        assert_eq!(v["model"], "e");
        assert!(v["data"][0]["embedding"].is_string(), "base64 as asked");
        assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
        // One vector for two inputs is a broken answer.
        assert!(p
            .response
            .translate_json(br#"{"embeddings":[{"values":[1]}]}"#, 0)
            .is_err());
        let e = plan(
            json!({"provider": "gemini"}),
            json!({"model": "e", "input": [1, 2]}),
        )
        .err()
        .unwrap();
        assert_eq!(e.param.as_deref(), Some("input"));
    }

    #[test]
    fn vertex_and_bedrock_shapes() {
        let p = plan(
            json!({"provider": "vertex", "base_path": "/v1/projects/p/locations/l/publishers"}),
            json!({"model": "text-embedding-005", "input": "x", "dimensions": 3}),
        )
        .unwrap();
        assert_eq!(
            p.request.path,
            "/v1/projects/p/locations/l/publishers/google/models/text-embedding-005:predict"
        );
        assert_eq!(
            sent(&p),
            json!({"instances": [{"content": "x"}], "parameters": {"outputDimensionality": 3}})
        );
        let v = answer(
            &p,
            json!({"predictions": [{"embeddings": {"values": [0.1, 0.2, 0.3], "statistics": {"token_count": 5.0}}}]}),
        );
        assert_eq!(v["usage"]["prompt_tokens"], 5);
        assert_eq!(v["data"][0]["embedding"], json!([0.1, 0.2, 0.3]));

        let p = plan(
            json!({"provider": "bedrock"}),
            json!({"model": "amazon.titan-embed-text-v2:0", "input": ["x"], "dimensions": 256}),
        )
        .unwrap();
        assert_eq!(
            p.request.path,
            "/model/amazon.titan-embed-text-v2%3A0/invoke"
        );
        assert_eq!(
            sent(&p),
            json!({"inputText": "x", "normalize": true, "dimensions": 256})
        );
        let v = answer(&p, json!({"embedding": [0.5], "inputTextTokenCount": 2}));
        assert_eq!(v["usage"]["total_tokens"], 2);
        assert!(plan(
            json!({"provider": "bedrock"}),
            json!({"model": "amazon.titan-embed-text-v2:0", "input": ["x", "y"]})
        )
        .is_err());
        let p = plan(
            json!({"provider": "bedrock"}),
            json!({"model": "cohere.embed-english-v3", "input": ["x", "y"]}),
        )
        .unwrap();
        assert_eq!(sent(&p)["texts"], json!(["x", "y"]));
        let v = answer(&p, json!({"embeddings": {"float": [[1.0], [2.0]]}}));
        assert_eq!(v["data"][1]["embedding"], json!([2.0]));
    }

    #[test]
    fn anthropic_says_it_has_none() {
        let e = plan(
            json!({"provider": "anthropic"}),
            json!({"model": "claude", "input": "x"}),
        )
        .err()
        .unwrap();
        assert_eq!(
            (e.status, e.code.as_deref()),
            (400, Some("model_not_supported"))
        );
    }
}
