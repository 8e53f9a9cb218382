//! Kubernetes label selectors (matchLabels and matchExpressions).

use std::collections::BTreeMap;

/// The `Selector` of an `Option<&...>` generated label selector: each
/// Gateway API type generates its own, with the same fields.
macro_rules! selector_of {
    ($sel:expr) => {{
        let sel = $sel;
        $crate::translate::selector::Selector {
            labels: sel.and_then(|s| s.match_labels.clone()).unwrap_or_default(),
            expressions: sel
                .and_then(|s| s.match_expressions.as_ref())
                .into_iter()
                .flatten()
                .map(|e| {
                    (
                        e.key.clone(),
                        e.operator.clone(),
                        e.values.clone().unwrap_or_default(),
                    )
                })
                .collect(),
        }
    }};
}
pub(crate) use selector_of;

#[derive(Clone, Debug, Default)]
pub struct Selector {
    pub labels: BTreeMap<String, String>,
    /// (key, operator, values): In, NotIn, Exists, DoesNotExist.
    pub expressions: Vec<(String, String, Vec<String>)>,
}

impl Selector {
    /// Whether `labels` satisfy the selector; `Err` for an unknown operator.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> Result<bool, String> {
        if !self.labels.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            return Ok(false);
        }
        for (key, op, values) in &self.expressions {
            let value = labels.get(key);
            let ok = match op.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                other => return Err(format!("unknown selector operator {other:?}")),
            };
            if !ok {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_expressions() {
        let labels: BTreeMap<_, _> = [("a".to_string(), "1".to_string())].into();
        let mut s = Selector::default();
        s.labels.insert("a".into(), "1".into());
        assert!(s.matches(&labels).unwrap());
        s.expressions
            .push(("b".into(), "DoesNotExist".into(), vec![]));
        assert!(s.matches(&labels).unwrap());
        s.expressions
            .push(("a".into(), "In".into(), vec!["2".into()]));
        assert!(!s.matches(&labels).unwrap());
        s.expressions[1].1 = "Bogus".into();
        assert!(s.matches(&labels).is_err());
    }
}
