//! Status conditions as the translator produces them: everything the
//! Kubernetes API shows but `lastTransitionTime`, which needs a clock and is
//! stamped later by `crate::status`.

use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: &'static str,
    pub status: &'static str,
    pub reason: String,
    pub message: String,
    pub observed_generation: i64,
}

impl Condition {
    pub fn new(
        type_: &'static str,
        ok: bool,
        reason: &str,
        message: impl Into<String>,
        generation: i64,
    ) -> Self {
        Condition {
            type_,
            status: if ok { "True" } else { "False" },
            reason: reason.to_string(),
            message: message.into(),
            observed_generation: generation,
        }
    }
}

/// A condition being assembled: starts true with its positive reason and
/// keeps the first failure it is told about.
#[derive(Clone, Debug)]
pub struct Verdict {
    pub failure: Option<(String, String)>,
    ok_reason: &'static str,
}

impl Verdict {
    pub fn ok(reason: &'static str) -> Self {
        Verdict {
            failure: None,
            ok_reason: reason,
        }
    }

    /// Records a failure unless an earlier one is already recorded.
    pub fn fail(&mut self, reason: &str, message: impl Into<String>) {
        if self.failure.is_none() {
            self.failure = Some((reason.to_string(), message.into()));
        }
    }

    pub fn is_ok(&self) -> bool {
        self.failure.is_none()
    }

    pub fn condition(&self, type_: &'static str, ok_message: &str, generation: i64) -> Condition {
        match &self.failure {
            None => Condition::new(type_, true, self.ok_reason, ok_message, generation),
            Some((reason, message)) => {
                Condition::new(type_, false, reason, message.clone(), generation)
            }
        }
    }
}
