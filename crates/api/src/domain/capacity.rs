//! Capacity provider strategies: which providers a launch may use, checked as ECS checks them, and
//! how its tasks split between them by `base` and `weight`.
//!
//! The split (ECS documents the rules, not the arithmetic): while the provider with a base has
//! fewer tasks than its base, it takes the next task; after that each task goes to the provider
//! with a weight above zero whose tasks beyond its base, plus this one, are the smallest share of
//! its weight ((c + 1) / w least), ties to the larger weight, then to the earlier item. For a
//! service the counts start from its running tasks on each provider, so scaling 10 tasks of
//! `CP-OD base=2 weight=1, CP-SPOT weight=3` to 22 splits 4/6 and then 7/15, as the ECS Spot
//! workshop shows; for RunTask they start at zero for each call.

use flotilla_model::{CapacityProvider, CapacityProviderStrategyItem, Cluster};

use crate::error::{ApiError, ApiResult};
use crate::state::cache::Indexes;
use crate::state::keys;

pub use crate::state::snapshots::PROVIDER_ATTRIBUTE;

/// How many items a strategy may have.
pub const MAX_STRATEGY_ITEMS: usize = 20;

/// One checked strategy item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub provider: String,
    pub weight: u32,
    pub base: u32,
    /// Whether tasks that fit nowhere wait in PROVISIONING for managed scaling to add hosts.
    pub managed_scaling: bool,
}

/// A launch's capacity: the EC2 launch type, the FARGATE launch type, or a strategy over the
/// cluster's providers (Auto Scaling group providers, or FARGATE and FARGATE_SPOT).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capacity {
    LaunchType,
    Fargate,
    Strategy(Vec<Item>),
}

impl Capacity {
    /// Whether the launch's tasks run on the Fargate pool.
    pub fn is_fargate(&self) -> bool {
        match self {
            Capacity::LaunchType => false,
            Capacity::Fargate => true,
            Capacity::Strategy(items) => items.iter().any(|i| crate::domain::fargate::is_provider(&i.provider)),
        }
    }

    /// The launch type the definition must be compatible with.
    pub fn launch_type(&self) -> &'static str {
        if self.is_fargate() {
            "FARGATE"
        } else {
            "EC2"
        }
    }
}

/// The checks every strategy passes, wherever it is given (RunTask, CreateService,
/// UpdateService, PutClusterCapacityProviders), before its providers are looked up.
pub fn check_items(field: &str, items: &[CapacityProviderStrategyItem]) -> ApiResult<()> {
    if items.len() > MAX_STRATEGY_ITEMS {
        return Err(ApiError::invalid_parameter(format!(
            "{field} can contain at most {MAX_STRATEGY_ITEMS} capacity providers; got {}.",
            items.len()
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, item) in items.iter().enumerate() {
        let name = item.capacity_provider.as_deref().unwrap_or("");
        if name.is_empty() {
            return Err(ApiError::invalid_parameter(format!("{field}[{i}].capacityProvider must be given.")));
        }
        if !seen.insert(short_name(name)) {
            return Err(ApiError::invalid_parameter(format!("{field} names capacity provider {name} more than once.")));
        }
        if let Some(w) = item.weight.filter(|w| !(0..=1000).contains(w)) {
            return Err(ApiError::invalid_parameter(format!(
                "{field}[{i}].weight must be between 0 and 1000; got {w}."
            )));
        }
        if let Some(b) = item.base.filter(|b| !(0..=100_000).contains(b)) {
            return Err(ApiError::invalid_parameter(format!(
                "{field}[{i}].base must be between 0 and 100000; got {b}."
            )));
        }
    }
    if items.iter().filter(|i| i.base.unwrap_or(0) > 0).count() > 1 {
        return Err(ApiError::invalid_parameter(format!(
            "{field}: only one capacity provider in a capacity provider strategy can have a base defined."
        )));
    }
    if items.len() > 1 && items.iter().all(|i| i.weight.unwrap_or(0) == 0) {
        return Err(ApiError::invalid_parameter(format!(
            "{field}: at least one capacity provider in a strategy of several must have a weight greater than zero."
        )));
    }
    Ok(())
}

/// A provider's name from its name or ARN.
pub fn short_name(given: &str) -> &str {
    given.rsplit_once(":capacity-provider/").map(|(_, n)| n).unwrap_or(given)
}

/// The ACTIVE capacity provider `given` (a name or ARN) names.
pub fn active_provider<'a>(ix: &'a Indexes, given: &str) -> Option<&'a CapacityProvider> {
    let e = ix.capacity_providers.get(&keys::capacity_provider(short_name(given)))?;
    (e.value.status.as_deref() == Some("ACTIVE")).then_some(&*e.value)
}

/// Whether the provider scales its group to fit the tasks that wait for it.
pub fn has_managed_scaling(p: &CapacityProvider) -> bool {
    p.auto_scaling_group_provider
        .as_ref()
        .and_then(|a| a.managed_scaling.as_ref())
        .is_some_and(|m| m.status.as_deref() == Some("ENABLED"))
}

/// The capacity a launch in `cluster` uses: its `launchType` if given, else the strategy given, else
/// the cluster's default strategy, else the EC2 launch type. Every provider must be associated
/// with the cluster.
pub fn resolve(
    ix: &Indexes,
    cluster: &Cluster,
    launch_type: Option<&str>,
    given: Option<&[CapacityProviderStrategyItem]>,
) -> ApiResult<Capacity> {
    let given = given.filter(|g| !g.is_empty());
    if launch_type.is_some() && given.is_some() {
        return Err(ApiError::invalid_parameter(
            "Specifying both a launch type and capacity provider strategy is not supported. Remove one and try again.",
        ));
    }
    match launch_type {
        Some("FARGATE") => return Ok(Capacity::Fargate),
        // Which other launch types can run is the caller's rule.
        Some(_) => return Ok(Capacity::LaunchType),
        None => {}
    }
    let (field, items) = match given {
        Some(items) => ("capacityProviderStrategy", items),
        None => match cluster.default_capacity_provider_strategy.as_deref().filter(|d| !d.is_empty()) {
            Some(items) => ("defaultCapacityProviderStrategy", items),
            None => return Ok(Capacity::LaunchType),
        },
    };
    check_items(field, items)?;
    let associated = cluster.capacity_providers.as_deref().unwrap_or_default();
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let name = short_name(item.capacity_provider.as_deref().unwrap_or(""));
        let is_associated = associated.iter().any(|a| short_name(a) == name);
        if crate::domain::fargate::is_provider(name) {
            if !is_associated {
                return Err(not_associated());
            }
            out.push(Item {
                provider: name.to_string(),
                weight: item.weight.unwrap_or(0).max(0) as u32,
                base: item.base.unwrap_or(0).max(0) as u32,
                // Fargate tasks that find no room wait for it, as on ECS.
                managed_scaling: true,
            });
            continue;
        }
        let provider = active_provider(ix, name).filter(|_| is_associated);
        let Some(provider) = provider else { return Err(not_associated()) };
        out.push(Item {
            provider: name.to_string(),
            weight: item.weight.unwrap_or(0).max(0) as u32,
            base: item.base.unwrap_or(0).max(0) as u32,
            managed_scaling: has_managed_scaling(provider),
        });
    }
    let fargate = out.iter().filter(|i| crate::domain::fargate::is_provider(&i.provider)).count();
    if fargate > 0 && fargate < out.len() {
        return Err(ApiError::invalid_parameter(format!(
            "{field} can contain only Auto Scaling group capacity providers or only Fargate capacity providers, not both."
        )));
    }
    Ok(Capacity::Strategy(out))
}

fn not_associated() -> ApiError {
    ApiError::invalid_parameter(
        "The specified capacity provider strategy cannot contain a capacity provider that is not associated with the cluster. Associate the capacity provider with the cluster or specify a valid capacity provider and try again.",
    )
}

/// The strategy as ECS shows it on a service: every item with its weight and base filled in.
pub fn filled(items: &[CapacityProviderStrategyItem]) -> Vec<CapacityProviderStrategyItem> {
    items
        .iter()
        .map(|i| CapacityProviderStrategyItem {
            capacity_provider: i.capacity_provider.as_deref().map(|n| short_name(n).to_string()),
            weight: Some(i.weight.unwrap_or(0)),
            base: Some(i.base.unwrap_or(0)),
        })
        .collect()
}

/// Which item each of `n` new tasks goes to, given how many tasks each item's provider already
/// has (`existing`, in item order).
pub fn split(items: &[Item], existing: &[u32], n: u32) -> Vec<usize> {
    let mut counts: Vec<u64> = (0..items.len()).map(|i| u64::from(existing.get(i).copied().unwrap_or(0))).collect();
    let single = items.len() == 1;
    let mut out = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let pick =
            (0..items.len()).find(|&i| items[i].base > 0 && counts[i] < u64::from(items[i].base)).or_else(|| {
                let mut best: Option<usize> = None;
                for (i, it) in items.iter().enumerate() {
                    if it.weight == 0 && !single {
                        continue;
                    }
                    let beyond = counts[i].saturating_sub(u64::from(it.base));
                    let better = match best {
                        None => true,
                        Some(b) => {
                            let (wb, wi) = (u64::from(items[b].weight.max(1)), u64::from(it.weight.max(1)));
                            let cb = counts[b].saturating_sub(u64::from(items[b].base));
                            // (beyond + 1) / wi < (cb + 1) / wb, in integers.
                            let (lhs, rhs) = ((beyond + 1) * wb, (cb + 1) * wi);
                            lhs < rhs || (lhs == rhs && it.weight > items[b].weight)
                        }
                    };
                    if better {
                        best = Some(i);
                    }
                }
                best
            });
        let Some(pick) = pick else { break };
        counts[pick] += 1;
        out.push(pick);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(provider: &str, weight: u32, base: u32) -> Item {
        Item { provider: provider.into(), weight, base, managed_scaling: true }
    }

    fn tally(items: &[Item], existing: &[u32], n: u32) -> Vec<u32> {
        let mut out = existing.to_vec();
        out.resize(items.len(), 0);
        for i in split(items, existing, n) {
            out[i] += 1;
        }
        out
    }

    #[test]
    fn the_workshop_split() {
        let s = [item("CP-OD", 1, 2), item("CP-SPOT", 3, 0)];
        assert_eq!(tally(&s, &[], 10), vec![4, 6]);
        assert_eq!(tally(&s, &[4, 6], 12), vec![7, 15]);
        let f = [item("FARGATE", 3, 0), item("FARGATE_SPOT", 1, 0)];
        assert_eq!(tally(&f, &[], 4), vec![3, 1]);
    }

    #[test]
    fn base_first_then_weights_and_zero_weight_never() {
        let s = [item("a", 0, 0), item("b", 1, 0), item("c", 1, 3)];
        let t = tally(&s, &[], 5);
        assert_eq!(t, vec![0, 1, 4]);
        assert_eq!(tally(&[item("only", 0, 0)], &[], 3), vec![3]);
        assert_eq!(tally(&[item("a", 1, 0), item("b", 4, 0)], &[], 10), vec![2, 8]);
    }

    #[test]
    fn checks_name_the_field() {
        let it = |name: &str, w: Option<i32>, b: Option<i32>| CapacityProviderStrategyItem {
            capacity_provider: Some(name.into()),
            weight: w,
            base: b,
        };
        let e = check_items("capacityProviderStrategy", &[it("a", Some(1001), None)]).unwrap_err();
        assert!(e.message.contains("capacityProviderStrategy[0].weight"), "{}", e.message);
        let e = check_items("x", &[it("a", Some(1), Some(1)), it("b", Some(1), Some(2))]).unwrap_err();
        assert!(e.message.contains("only one"), "{}", e.message);
        let e = check_items("x", &[it("a", None, None), it("b", Some(0), None)]).unwrap_err();
        assert!(e.message.contains("weight greater than zero"), "{}", e.message);
        assert!(check_items("x", &[it("a", None, None)]).is_ok());
        assert!(check_items("x", &[it("a", Some(1), None), it("a", Some(1), None)]).is_err());
    }
}
