//! Workload identity in a mesh, instead of a virtual key: who is calling, as Envoy knows it.
//!
//! - In a sidecar, the workload is the proxy's own: Istio's `node.metadata` (`NAMESPACE`,
//!   `SERVICE_ACCOUNT`, `WORKLOAD_NAME`, `LABELS`).
//! - In a central egress gateway, the workload is the mTLS peer: its certificate's SPIFFE URI SAN
//!   `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.
//!
//! Rules map identities to a team and project (`identities: [{match: {namespace: shop,
//! service_account: "*"}, team: shop, project: checkout}]`). Among the rules that match, the
//! most specific wins, field by field in the order trust domain, namespace, service account,
//! workload, then labels: an exact value over a glob, a longer glob over a shorter one, a glob
//! over an absent field (the one ranking rule of `models::Ranked`, per field).

use crate::models::glob;
use serde::Deserialize;
use std::collections::BTreeMap;

/// Where a filter reads the caller's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The proxy's own node metadata (a sidecar: the proxy is the workload).
    Node,
    /// The downstream connection's mTLS peer certificate (a gateway in front of workloads).
    Peer,
}

/// A workload's identity, as far as the source tells it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub trust_domain: Option<String>,
    pub namespace: Option<String>,
    pub service_account: Option<String>,
    pub workload: Option<String>,
    pub labels: BTreeMap<String, String>,
}

/// Longest identity value considered (Kubernetes names are at most 253 characters).
const MAX_VALUE: usize = 253;

fn clean(v: &str) -> Option<String> {
    let ok = !v.is_empty()
        && v.len() <= MAX_VALUE
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
    ok.then(|| v.to_string())
}

impl Identity {
    /// A SPIFFE id of Istio's shape: `spiffe://<trust-domain>/ns/<ns>/sa/<sa>`. Anything else
    /// (another path, a query, extra segments, odd characters) is no identity.
    pub fn from_spiffe(uri: &str) -> Option<Identity> {
        let rest = uri.strip_prefix("spiffe://")?;
        let mut parts = rest.split('/');
        let td = clean(parts.next()?)?;
        let (ns_kw, ns, sa_kw, sa) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if ns_kw != "ns" || sa_kw != "sa" || parts.next().is_some() {
            return None;
        }
        Some(Identity {
            trust_domain: Some(td),
            namespace: Some(clean(ns)?),
            service_account: Some(clean(sa)?),
            ..Default::default()
        })
    }

    /// From node metadata values (each `None` when absent); a value outside Kubernetes' name
    /// alphabet is treated as absent.
    pub fn from_node(
        namespace: Option<&str>,
        service_account: Option<&str>,
        workload: Option<&str>,
        labels: impl IntoIterator<Item = (String, String)>,
    ) -> Option<Identity> {
        let id = Identity {
            trust_domain: None,
            namespace: namespace.and_then(clean),
            service_account: service_account.and_then(clean),
            workload: workload.and_then(clean),
            labels: labels
                .into_iter()
                .filter_map(|(k, v)| Some((clean(&k)?, clean(&v)?)))
                .collect(),
        };
        id.namespace.is_some().then_some(id)
    }

    /// `ns/sa` (or `ns/-`), for logs and the access log's key field.
    pub fn describe(&self) -> String {
        format!(
            "{}/{}",
            self.namespace.as_deref().unwrap_or("-"),
            self.service_account.as_deref().unwrap_or("-")
        )
    }
}

/// A rule's `match`: each field a name or a glob; absent fields match anything.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    #[serde(default)]
    pub trust_domain: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub service_account: Option<String>,
    #[serde(default)]
    pub workload: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// How specifically one field matched: absent 0, a glob 1 (then its length), exact 2.
type Rank = Vec<(u8, usize)>;

fn field(pattern: &Option<String>, value: &Option<String>) -> Option<(u8, usize)> {
    match (pattern, value) {
        (None, _) => Some((0, 0)),
        (Some(p), Some(v)) if !p.contains('*') => (p == v).then_some((2, p.len())),
        (Some(p), Some(v)) => glob(p, v).then_some((1, p.len())),
        (Some(_), None) => None,
    }
}

impl Match {
    /// How specifically this rule matches `id`, or `None`.
    fn rank(&self, id: &Identity) -> Option<Rank> {
        let mut r = vec![
            field(&self.trust_domain, &id.trust_domain)?,
            field(&self.namespace, &id.namespace)?,
            field(&self.service_account, &id.service_account)?,
            field(&self.workload, &id.workload)?,
        ];
        for (k, p) in &self.labels {
            r.push(field(&Some(p.clone()), &id.labels.get(k).cloned())?);
        }
        Some(r)
    }

    pub fn check(&self, at: &str) -> Result<(), String> {
        let all = [
            &self.trust_domain,
            &self.namespace,
            &self.service_account,
            &self.workload,
        ];
        for v in all.into_iter().flatten().chain(self.labels.values()) {
            if v.is_empty() || v.len() > MAX_VALUE {
                return Err(format!("field '{at}': empty or overlong value"));
            }
        }
        if all.iter().all(|v| v.is_none()) && self.labels.is_empty() {
            return Err(format!(
                "field '{at}': match at least one of trust_domain, namespace, service_account, workload, labels (use \"*\" to match every workload)"
            ));
        }
        Ok(())
    }
}

/// The index of the most specific rule matching `id` (the first of equally specific ones).
pub fn best<'a>(rules: impl IntoIterator<Item = &'a Match>, id: &Identity) -> Option<usize> {
    let mut best: Option<(Rank, usize)> = None;
    for (i, m) in rules.into_iter().enumerate() {
        if let Some(r) = m.rank(id) {
            if best.as_ref().is_none_or(|(b, _)| r > *b) {
                best = Some((r, i));
            }
        }
    }
    best.map(|(_, i)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(ns: Option<&str>, sa: Option<&str>) -> Match {
        Match {
            namespace: ns.map(str::to_string),
            service_account: sa.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn spiffe_ids_of_istios_shape_only() {
        let id = Identity::from_spiffe("spiffe://cluster.local/ns/shop/sa/checkout").unwrap();
        assert_eq!(
            (
                id.trust_domain.as_deref(),
                id.namespace.as_deref(),
                id.service_account.as_deref()
            ),
            (Some("cluster.local"), Some("shop"), Some("checkout"))
        );
        for bad in [
            "spiffe://cluster.local/ns/shop",
            "spiffe://cluster.local/ns/shop/sa/checkout/x",
            "spiffe://cluster.local/sa/x/ns/y",
            "spiffe://cluster.local/ns/sh op/sa/x",
            "spiffe://cluster.local/ns/shop/sa/x?y",
            "https://cluster.local/ns/shop/sa/checkout",
            "spiffe:///ns/a/sa/b",
            "",
        ] {
            assert_eq!(Identity::from_spiffe(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_most_specific_rule_wins_field_by_field() {
        let rules = [
            m(Some("*"), None),
            m(Some("shop"), Some("*")),
            m(Some("shop"), Some("checkout")),
            m(Some("sh*"), Some("checkout")),
            Match {
                namespace: Some("shop".into()),
                labels: [("app".to_string(), "cart".to_string())].into(),
                ..Default::default()
            },
        ];
        let id = |ns: &str, sa: &str, labels: &[(&str, &str)]| {
            Identity::from_node(
                Some(ns),
                Some(sa),
                None,
                labels.iter().map(|(k, v)| (k.to_string(), v.to_string())),
            )
            .unwrap()
        };
        assert_eq!(best(&rules, &id("shop", "checkout", &[])), Some(2));
        assert_eq!(best(&rules, &id("shop", "billing", &[])), Some(1));
        assert_eq!(
            best(&rules, &id("shop", "billing", &[("app", "cart")])),
            Some(1),
            "service account outranks labels"
        );
        assert_eq!(best(&rules, &id("shopx", "checkout", &[])), Some(3));
        assert_eq!(best(&rules, &id("other", "x", &[])), Some(0));
        assert_eq!(best(&rules[1..3], &id("other", "x", &[])), None);
        assert!(m(None, None).check("identities[0].match").is_err());
        assert_eq!(
            Identity::from_node(None, Some("sa"), None, []),
            None,
            "a workload has a namespace"
        );
    }
}
