//! Adding an attached route's rules to a listener's virtual hosts: one IR
//! route per match of each rule, with its precedence key and the Access
//! that guards it.

use super::gateway::ListenerCtx;
use super::hostname;
use super::rules::Rule;
use crate::resources::ObjKey;

/// Adds the rules of the route `key` (with `hostnames`) to the listener's
/// virtual hosts, each guarded by the Access `access` names for it.
pub fn program(
    listener: &mut ListenerCtx,
    key: &ObjKey,
    hostnames: &[String],
    rules: &[(usize, Rule)],
    mut access: impl FnMut(&ListenerCtx, &Rule) -> Option<String>,
) {
    if !listener.usable() {
        return;
    }
    let guards: Vec<Option<String>> = rules.iter().map(|(_, r)| access(listener, r)).collect();
    for host in hostname::effective(hostnames, listener.hostname.as_deref()) {
        let vhost = listener.vhosts.entry(host).or_default();
        for ((i, rule), guard) in rules.iter().zip(&guards) {
            for (j, (sort, _)) in rule.matches.iter().enumerate() {
                let route = rule.route(&key.namespace, &key.name, *i, j, guard.clone());
                vhost.push((sort.clone(), route));
            }
        }
    }
}
