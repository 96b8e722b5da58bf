//! The set of model names a gateway serves: exact names and globs (`claude-*`, `o1*`), and the
//! `GET /v1/models` listing.

use serde_json::{json, Value};

#[derive(Debug, Clone, Default)]
pub struct ModelSet {
    patterns: Vec<String>,
    /// Concrete names for the listing: the exact patterns and the known names a glob serves.
    listed: Vec<String>,
}

impl ModelSet {
    pub fn new(patterns: Vec<String>) -> Self {
        Self::with_listed(patterns, Vec::new())
    }

    /// `known`: concrete model names the configuration also knows (chain targets, priced
    /// models); those a pattern serves are listed beside the exact patterns.
    pub fn with_listed(patterns: Vec<String>, known: Vec<String>) -> Self {
        // The exact names in the configuration's order, then the known ones a glob serves.
        let mut listed: Vec<String> = patterns
            .iter()
            .filter(|p| !p.contains('*'))
            .cloned()
            .collect();
        let mut more: Vec<&String> = known
            .iter()
            .filter(|m| !m.contains('*') && !listed.contains(m))
            .filter(|m| patterns.iter().any(|p| glob(p, m)))
            .collect();
        more.sort();
        more.dedup();
        listed.extend(more.into_iter().cloned());
        ModelSet { patterns, listed }
    }

    pub fn contains(&self, model: &str) -> bool {
        self.patterns.iter().any(|p| glob(p, model))
    }

    /// OpenAI's model list: ids a client can pick, never globs (`gpt-*` is not a model).
    pub fn list(&self, created: u64) -> Value {
        json!({
            "object": "list",
            "data": self.listed.iter().map(|p| model_object(p, created)).collect::<Vec<_>>(),
        })
    }

    /// `GET /v1/models/{id}`: the exact name (or a name a glob matches).
    pub fn retrieve(&self, id: &str, created: u64) -> Option<Value> {
        self.contains(id).then(|| model_object(id, created))
    }
}

/// Anthropic's model list (`GET /v1/models` with `anthropic-version`): one page, all of it.
pub fn anthropic_list(models: &ModelSet, created: u64) -> Value {
    let data: Vec<Value> = models
        .listed
        .iter()
        .map(|id| anthropic_model(id, created))
        .collect();
    json!({
        "data": data,
        "has_more": false,
        "first_id": models.listed.first(),
        "last_id": models.listed.last(),
    })
}

/// One model in Anthropic's shape.
pub fn anthropic_model(id: &str, created: u64) -> Value {
    json!({"type": "model", "id": id, "display_name": id,
           "created_at": crate::quota::rfc3339(created)})
}

fn model_object(id: &str, created: u64) -> Value {
    json!({"id": id, "object": "model", "created": created, "owned_by": "sluice"})
}

/// Values by model name or glob, ranked by the one rule every place uses: an exact name wins,
/// then the longest glob (the most specific), then the first in name order. Sorted once, when
/// the configuration is compiled.
#[derive(Debug, Clone)]
pub struct Ranked<T> {
    entries: Vec<(String, T)>,
}

impl<T> Default for Ranked<T> {
    fn default() -> Self {
        Ranked {
            entries: Vec::new(),
        }
    }
}

impl<T> Ranked<T> {
    pub fn new(entries: impl IntoIterator<Item = (String, T)>) -> Self {
        let mut entries: Vec<(String, T)> = entries.into_iter().collect();
        entries.sort_by(|(a, _), (b, _)| {
            (a.contains('*'), std::cmp::Reverse(a.len()), a.as_str()).cmp(&(
                b.contains('*'),
                std::cmp::Reverse(b.len()),
                b.as_str(),
            ))
        });
        Ranked { entries }
    }

    /// The value of the best-ranked pattern that matches `name`.
    pub fn get(&self, name: &str) -> Option<&T> {
        self.entries
            .iter()
            .find(|(p, _)| glob(p, name))
            .map(|(_, v)| v)
    }

    pub fn patterns(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(p, _)| p.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
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
    fn ranking_is_exact_then_longest_glob() {
        let r = Ranked::new(
            [
                ("*", 0),
                ("gpt-*", 1),
                ("gpt-4o", 2),
                ("gpt-4o-*", 3),
                ("gpt-4*", 4),
            ]
            .map(|(k, v)| (k.to_string(), v)),
        );
        assert_eq!(r.get("gpt-4o"), Some(&2));
        assert_eq!(r.get("gpt-4o-mini"), Some(&3));
        assert_eq!(r.get("gpt-4.1"), Some(&4));
        assert_eq!(r.get("gpt-5"), Some(&1));
        assert_eq!(r.get("claude"), Some(&0));
        // Insertion order does not matter.
        let r2 = Ranked::new([("gpt-4o", 2), ("gpt-*", 1)].map(|(k, v)| (k.to_string(), v)));
        assert_eq!(r2.get("gpt-4o"), Some(&2));
        assert!(Ranked::<u8>::default().get("x").is_none());
    }

    #[test]
    fn anthropic_shape() {
        let m = ModelSet::with_listed(
            vec!["claude-*".into(), "mock-gpt".into()],
            vec!["claude-sonnet-4-5".into()],
        );
        let v = anthropic_list(&m, 1_796_222_052);
        assert_eq!(v["data"][0]["type"], "model");
        assert_eq!(v["data"][0]["created_at"], "2026-12-02T14:34:12Z");
        assert_eq!(v["has_more"], false);
        assert_eq!(v["last_id"], v["data"][1]["id"]);
    }

    #[test]
    fn list_and_retrieve() {
        let s = ModelSet::with_listed(
            vec!["mock-gpt".into(), "claude-*".into()],
            vec![
                "claude-sonnet-4-5".into(),
                "gpt-4o".into(),
                "mock-gpt".into(),
            ],
        );
        let list = s.list(1);
        let ids: Vec<&str> = list["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["mock-gpt", "claude-sonnet-4-5"]);
        assert_eq!(s.retrieve("claude-x", 1).unwrap()["id"], "claude-x");
        assert!(s.retrieve("gpt-4", 1).is_none());
    }
}
