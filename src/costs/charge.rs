//! What one generation cost by its `/generation` record: OpenRouter's charge (`total_cost`)
//! and, for a BYOK generation, the provider's (`upstream_inference_cost`, billed to the
//! user's own key). One reading for `costs` and `report`, so the two never disagree.

use serde::Deserialize;
use serde_json::Value;

use crate::output::record::byok_part;

/// The cost fields of a `/generation` `data` object. Anything but a number or a bool reads
/// as "not said", never as a broken line.
#[derive(Debug, Default, Deserialize)]
pub struct Fields {
    #[serde(default)]
    total_cost: Value,
    #[serde(default)]
    is_byok: Value,
    #[serde(default)]
    upstream_inference_cost: Value,
}

/// A generation's spend in USD, in its two parts.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Charge {
    /// Charged to the OpenRouter balance (`total_cost`; only the fee for BYOK).
    pub openrouter: f64,
    /// Billed by the provider to the user's own key (BYOK), 0 otherwise.
    pub byok: f64,
}

impl Charge {
    pub fn total(self) -> f64 {
        self.openrouter + self.byok
    }
}

impl Fields {
    /// The charge, or `None` when `total_cost` is not a number.
    pub fn charge(&self) -> Option<Charge> {
        let openrouter = self.total_cost.as_f64()?;
        let byok = byok_part(
            self.is_byok.as_bool(),
            self.upstream_inference_cost.as_f64(),
        );
        Some(Charge { openrouter, byok })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn charge(v: Value) -> Option<Charge> {
        Fields::deserialize(v).unwrap().charge()
    }

    #[test]
    fn byok_adds_the_upstream_cost_and_nothing_else_does() {
        let byok = json!({"total_cost": 0.05, "is_byok": true, "upstream_inference_cost": 1.0});
        assert_eq!(
            charge(byok),
            Some(Charge {
                openrouter: 0.05,
                byok: 1.0
            })
        );
        // Not BYOK: the upstream cost equals total_cost (or is null); not added.
        let plain = json!({"total_cost": 0.5, "is_byok": false, "upstream_inference_cost": 0.5});
        assert_eq!(charge(plain).map(Charge::total), Some(0.5));
        assert_eq!(
            charge(json!({"total_cost": 0.5})).map(Charge::total),
            Some(0.5)
        );
        assert_eq!(charge(json!({"total_cost": null})), None);
        assert_eq!(charge(json!({"total_cost": "1"})), None);
        let odd = json!({"total_cost": 0.5, "is_byok": "yes", "upstream_inference_cost": 2});
        assert_eq!(charge(odd).map(Charge::total), Some(0.5));
    }
}
