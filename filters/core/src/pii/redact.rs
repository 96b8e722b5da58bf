//! Redaction of a request: the actions (tokenize, redact, mask, hash, block) applied to every
//! string the provider will see, but the structural fields.

use super::{Action, Scanner};
use crate::error::GatewayError;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

pub(super) fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    let digest: [u8; 32];
    let key = if key.len() > 64 {
        digest = Sha256::digest(key).into();
        &digest[..]
    } else {
        key
    };
    for (slot, b) in k.iter_mut().zip(key) {
        *slot = *b;
    }
    let inner: [u8; 32] = Sha256::new()
        .chain_update(k.map(|b| b ^ 0x36))
        .chain_update(msg)
        .finalize()
        .into();
    Sha256::new()
        .chain_update(k.map(|b| b ^ 0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

pub(super) fn mask(value: &str) -> String {
    let keep = value
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .count()
        .saturating_sub(4);
    let mut seen = 0;
    value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                seen += 1;
                if seen <= keep {
                    return '*';
                }
            }
            c
        })
        .collect()
}

/// What redacting one request did.
#[derive(Debug, Default)]
pub struct Redaction {
    /// Placeholder -> original value, for re-hydration.
    pub tokens: Vec<(String, String)>,
    /// Detections by type and action (for metrics).
    pub counts: BTreeMap<(String, &'static str), u64>,
    pub blocked: BTreeSet<String>,
    pub changed: bool,
}

pub(super) fn action_name(a: Action) -> &'static str {
    match a {
        Action::Tokenize => "tokenize",
        Action::Redact => "redact",
        Action::Mask => "mask",
        Action::Hash => "hash",
        Action::Block => "block",
        Action::Allow => "allow",
    }
}

/// Redacts one request: every text a provider sees (message content strings and text parts,
/// system prompts, tool-call arguments, tool results, `name` fields). Placeholders are numbered
/// per type; one value keeps one placeholder; a number the client's own text already uses as
/// `[TYPE_N]` is skipped, so a placeholder never collides with what the user wrote.
pub struct Redactor<'a> {
    scanner: &'a Scanner,
    taken: HashSet<String>,
    by_value: HashMap<(String, String), String>,
    next: HashMap<String, u32>,
    /// An embeddings request: `tokenize` becomes the scanner's `embeddings_action`.
    embeddings: bool,
    pub out: Redaction,
}

impl<'a> Redactor<'a> {
    pub fn new(scanner: &'a Scanner) -> Self {
        Redactor {
            scanner,
            taken: HashSet::new(),
            by_value: HashMap::new(),
            next: HashMap::new(),
            embeddings: false,
            out: Redaction::default(),
        }
    }

    /// For `/v1/embeddings` inputs: nothing is re-hydrated into a vector, so no type is
    /// tokenized (those get the scanner's `embeddings_action`).
    pub fn for_embeddings(scanner: &'a Scanner) -> Self {
        Redactor {
            embeddings: true,
            ..Redactor::new(scanner)
        }
    }

    fn note_taken(&mut self, text: &str) {
        for m in self.scanner.placeholder_like.find_iter(text) {
            self.taken.insert(m.as_str().to_string());
        }
    }

    fn replacement(&mut self, kind: &str, value: &str) -> Option<String> {
        let mut action = self.scanner.action(kind);
        if self.embeddings && action == Action::Tokenize {
            action = self.scanner.embeddings_action;
        }
        *self
            .out
            .counts
            .entry((kind.to_string(), action_name(action)))
            .or_insert(0) += 1;
        match action {
            Action::Allow => None,
            Action::Block => {
                self.out.blocked.insert(kind.to_string());
                None
            }
            Action::Redact => Some(format!("[{kind}]")),
            Action::Mask => Some(mask(value)),
            Action::Hash => {
                let h = hmac_sha256(&self.scanner.hash_secret, value.as_bytes());
                Some(format!(
                    "[{kind}:{}]",
                    h.iter()
                        .take(6)
                        .map(|b| format!("{b:02x}"))
                        .collect::<String>()
                ))
            }
            Action::Tokenize => {
                let key = (kind.to_string(), value.to_string());
                if let Some(p) = self.by_value.get(&key) {
                    return Some(p.clone());
                }
                let n = self.next.entry(kind.to_string()).or_insert(0);
                let p = loop {
                    *n += 1;
                    let p = format!("[{kind}_{n}]");
                    if !self.taken.contains(&p) {
                        break p;
                    }
                };
                self.by_value.insert(key, p.clone());
                self.out.tokens.push((p.clone(), value.to_string()));
                Some(p)
            }
        }
    }

    pub fn redact_text(&mut self, text: &str) -> Option<String> {
        let findings = self.scanner.find(text);
        if findings.is_empty() {
            return None;
        }
        let mut out = String::with_capacity(text.len());
        let mut pos = 0;
        let mut changed = false;
        for f in findings {
            let (Some(before), Some(value)) = (text.get(pos..f.start), text.get(f.start..f.end))
            else {
                continue;
            };
            out.push_str(before);
            match self.replacement(&f.kind, value) {
                Some(r) => {
                    out.push_str(&r);
                    changed = true;
                }
                None => out.push_str(value),
            }
            pos = f.end;
        }
        out.push_str(text.get(pos..).unwrap_or_default());
        changed.then_some(out)
    }

    /// Every string the provider will see, but those under a structural key.
    fn visit(&mut self, v: &mut Value, collect: bool) {
        self.walk(v, None, collect);
    }

    fn walk(&mut self, v: &mut Value, key: Option<&str>, collect: bool) {
        match v {
            Value::String(s) => {
                if key.is_some_and(|k| STRUCTURAL.contains(&k)) {
                    return;
                }
                if !collect && key.is_some_and(|k| VERBATIM.contains(&k)) {
                    return;
                }
                if collect {
                    self.note_taken(s);
                } else if let Some(r) = self.redact_text(s) {
                    *s = r;
                    self.out.changed = true;
                }
            }
            // The elements of a list share its key (`stop`, `modalities`...).
            Value::Array(items) => {
                for item in items {
                    self.walk(item, key, collect);
                }
            }
            Value::Object(map) => {
                for (k, item) in map.iter_mut() {
                    self.walk(item, Some(k.as_str()), collect);
                }
            }
            _ => {}
        }
    }

    /// Redacts a parsed request in place; `Err` when a `block` type was found.
    pub fn redact_request(mut self, body: &mut Value) -> Result<Redaction, GatewayError> {
        self.visit(body, true);
        self.visit(body, false);
        if !self.out.blocked.is_empty() {
            let kinds: Vec<&str> = self.out.blocked.iter().map(String::as_str).collect();
            return Err(GatewayError::invalid_request(format!(
                "The request contains data that may not leave this organisation: {}.",
                kinds.join(", ")
            ))
            .with_code("pii_blocked"));
        }
        Ok(self.out)
    }
}

/// Keys whose string values are structure, not text, and are never scanned: names of things
/// the API defines (`model`, `role`, `type`, `object`, `tool_choice`, `reasoning_effort`...),
/// ids that must match across messages (`id`, `tool_call_id`), and media the provider decodes
/// (`url` of an image, base64 `data` / `file_data`), which a digit run could otherwise corrupt.
/// Every other string a request carries is scanned: message texts and names, tool-call
/// arguments, `user`, `metadata`, `stop`, tool descriptions and parameter schemas,
/// `response_format` schemas, predictions.
pub const STRUCTURAL: &[&str] = &[
    "model",
    "role",
    "type",
    "object",
    "id",
    "tool_call_id",
    "tool_choice",
    "url",
    "detail",
    "data",
    "file_data",
    "file_id",
    "format",
    "reasoning_effort",
    "service_tier",
    "modalities",
    "voice",
    "encoding_format",
    // Anthropic Messages: ids, media types, signatures and opaque data the API checks.
    "tool_use_id",
    "media_type",
    "signature",
    "stop_reason",
];

/// Keys whose text is sent as it is, though its placeholders count as taken: an earlier
/// turn's Anthropic thinking, which its signature covers byte for byte (a changed block is
/// refused). It came from the model, which only ever saw the redacted prompt.
pub const VERBATIM: &[&str] = &["thinking"];
