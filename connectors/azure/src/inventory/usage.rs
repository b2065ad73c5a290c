//! Sign-in usage: the two beta sign-in activity reports, per application id
//! and per credential key id. Refused or failing → usage unknown and a
//! `usage` gap, never "never used".

use std::collections::HashMap;

use nhi_contract::{Gap, Timestamp, Unseen, Usage};

use super::Scan;
use crate::client::{Api, ApiError};
use crate::model::{self, ts};

/// What the sign-in reports say, if they could be read: per application id
/// and per key id, the last use (`None`: listed, but no usable date).
pub(super) struct Activity {
    pub by_app: HashMap<String, Option<Timestamp>>,
    pub by_key: HashMap<String, Option<Timestamp>>,
}

/// Usage of an object, given the reports (if read) and its entry (if listed).
pub(super) fn usage_of(activity: &Option<Activity>, found: Option<&Option<Timestamp>>) -> Usage {
    match (activity, found) {
        (None, _) => Usage::Unknown,
        (Some(_), Some(Some(at))) => Usage::Used {
            at: *at,
            service: None,
            region: None,
        },
        // Listed without a date the report could give: unknown, not never.
        (Some(_), Some(None)) => Usage::Unknown,
        // The report was read and holds nothing for it: no recorded use.
        (Some(_), None) => Usage::Never,
    }
}

impl Scan<'_> {
    /// Both reports, or `None` with a `usage` gap.
    pub(super) async fn activity(&self, gaps: &mut Vec<Gap>) -> Option<Activity> {
        if !self.cfg.sign_in_reports {
            gaps.push(Gap {
                unseen: Unseen::Usage,
                reason: "sign-in reports disabled in the config: last use unknown".into(),
            });
            return None;
        }
        let sps = self
            .client
            .list::<model::SpSignIn>(Api::Graph, "/beta/reports/servicePrincipalSignInActivities")
            .await;
        let creds = match &sps {
            Ok(_) => Some(
                self.client
                    .list::<model::CredentialSignIn>(
                        Api::Graph,
                        "/beta/reports/appCredentialSignInActivities",
                    )
                    .await,
            ),
            Err(_) => None,
        };
        let refused = |e: &ApiError| matches!(e.status(), Some(400 | 401 | 403 | 404));
        match (sps, creds) {
            (Ok(sps), Some(Ok(creds))) => Some(Activity {
                by_app: sps
                    .into_iter()
                    .map(|s| (s.app_id.clone(), s.last_client_use()))
                    .collect(),
                by_key: creds
                    .into_iter()
                    .map(|c| {
                        let at = c
                            .sign_in_activity
                            .and_then(|a| ts(a.last_sign_in_date_time.as_deref()));
                        (c.key_id, at)
                    })
                    .collect(),
            }),
            (Err(e), _) | (_, Some(Err(e))) => {
                // No licence or permission (403), or a beta endpoint failing:
                // usage is unknown — never "never used" — and the rest of the
                // tenant is still read.
                let why = if refused(&e) { "refused" } else { "failed" };
                tracing::warn!(source = %self.cfg.name, error = %e, "sign-in reports {why}: usage unknown");
                gaps.push(Gap {
                    unseen: Unseen::Usage,
                    reason: format!("sign-in activity reports {why} ({e}): last use unknown"),
                });
                None
            }
            (Ok(_), None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_never_only_when_a_read_report_does_not_list_it() {
        let at = chrono::Utc::now();
        let act = Some(Activity {
            by_app: [
                ("listed".to_string(), Some(at)),
                ("undated".to_string(), None),
            ]
            .into(),
            by_key: HashMap::new(),
        });
        let get = |k: &str| usage_of(&act, act.as_ref().and_then(|a| a.by_app.get(k)));
        assert_eq!(get("listed").last_used_at(), Some(at));
        assert_eq!(get("undated"), Usage::Unknown);
        assert_eq!(get("absent"), Usage::Never);
        assert_eq!(usage_of(&None, None), Usage::Unknown);
    }
}
