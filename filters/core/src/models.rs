//! The set of model names a gateway serves: exact names and globs (`claude-*`, `o1*`), and the
//! `GET /v1/models` listing.

use serde_json::{json, Value};

#[derive(Debug, Clone, Default)]
pub struct ModelSet {
    patterns: Vec<String>,
}

impl ModelSet {
    pub fn new(patterns: Vec<String>) -> Self {
        ModelSet { patterns }
    }

    pub fn contains(&self, model: &str) -> bool {
        self.patterns.iter().any(|p| glob(p, model))
    }

    /// OpenAI's model list; globs are listed as written (they name families, not models).
    pub fn list(&self, created: u64) -> Value {
        json!({
            "object": "list",
            "data": self.patterns.iter().map(|p| model_object(p, created)).collect::<Vec<_>>(),
        })
    }

    /// `GET /v1/models/{id}`: the exact name (or a name a glob matches).
    pub fn retrieve(&self, id: &str, created: u64) -> Option<Value> {
        self.contains(id).then(|| model_object(id, created))
    }
}

fn model_object(id: &str, created: u64) -> Value {
    json!({"id": id, "object": "model", "created": created, "owned_by": "sluice"})
}

/// `*` matches any run of characters (including none); everything else matches itself.
pub fn glob(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for m in middle {
        match rest.find(m) {
            Some(i) => rest = rest.get(i + m.len()..).unwrap_or_default(),
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("gpt-*", "gpt-4o"));
        assert!(glob("o1*", "o1"));
        assert!(glob("o1*", "o1-mini"));
        assert!(!glob("o1*", "xo1"));
        assert!(glob("mock-gpt", "mock-gpt"));
        assert!(!glob("mock-gpt", "mock-gpt2"));
        assert!(glob("*-mini", "o4-mini"));
        assert!(glob("a*b*c", "aXbYc"));
        assert!(!glob("a*b*c", "aXbY"));
        assert!(!glob("ab*ab", "ab"));
        assert!(glob("*", ""));
    }

    #[test]
    fn list_and_retrieve() {
        let s = ModelSet::new(vec!["mock-gpt".into(), "claude-*".into()]);
        assert_eq!(s.list(1)["data"][1]["id"], "claude-*");
        assert_eq!(s.retrieve("claude-x", 1).unwrap()["id"], "claude-x");
        assert!(s.retrieve("gpt-4", 1).is_none());
    }
}
