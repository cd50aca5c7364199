//! Where each channel may send (`--allow-countries CHANNEL=CC,CC`), by the
//! destination's country as [`Number`] found it. A channel no rule names,
//! and no `*` rule covers, goes anywhere.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use phonenumber::country::Id;

use super::Number;
use crate::upstream::Channel;

#[derive(Debug, Default)]
pub struct CountryRules {
    /// By channel name (`sms`, `call`, …) or `*`.
    allowed: HashMap<String, HashSet<Id>>,
}

const CHANNELS: [&str; 6] = ["sms", "call", "whatsapp", "viber", "sma", "*"];

impl CountryRules {
    /// Parses the repeated `CHANNEL=CC,CC` flags.
    pub fn parse(rules: &[String]) -> Result<Self, String> {
        let mut parsed = CountryRules::default();
        for rule in rules {
            let (channel, countries) = rule.split_once('=').ok_or_else(|| {
                format!("--allow-countries {rule:?}: expected CHANNEL=CC,CC, e.g. sms=SG,MY")
            })?;
            let channel = channel.trim().to_ascii_lowercase();
            if !CHANNELS.contains(&channel.as_str()) {
                return Err(format!(
                    "--allow-countries {rule:?}: the channel is one of {}",
                    CHANNELS.join(", ")
                ));
            }
            let mut ids = HashSet::new();
            for code in countries
                .split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty())
            {
                let id = Id::from_str(&code.to_ascii_uppercase()).map_err(|_| {
                    format!("--allow-countries {rule:?}: {code:?} is not an ISO 3166 alpha-2 code")
                })?;
                ids.insert(id);
            }
            if ids.is_empty() {
                return Err(format!(
                    "--allow-countries {rule:?}: name at least one country"
                ));
            }
            if parsed.allowed.insert(channel, ids).is_some() {
                return Err(format!(
                    "--allow-countries {rule:?}: that channel is given twice"
                ));
            }
        }
        Ok(parsed)
    }

    /// None when allowed; else the destination's country (`None` inside
    /// when libphonenumber doesn't know it).
    pub fn refuses(&self, channel: Channel, destination: &Number) -> Option<Option<Id>> {
        let allowed = self
            .allowed
            .get(channel.as_str())
            .or_else(|| self.allowed.get("*"))?;
        match destination.country {
            Some(id) if allowed.contains(&id) => None,
            other => Some(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(destination: &str) -> Number {
        Number::parse(destination, None)
    }

    fn rules(flags: &[&str]) -> CountryRules {
        CountryRules::parse(&flags.iter().map(|f| f.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn each_channel_goes_where_its_rule_says() {
        let rules = rules(&["sms=SG,MY", "call=sg"]);
        assert_eq!(rules.refuses(Channel::Sms, &at("+6591234567")), None);
        assert_eq!(rules.refuses(Channel::Sms, &at("+60123456789")), None);
        assert_eq!(
            rules.refuses(Channel::Call, &at("+60123456789")),
            Some(Some(Id::MY))
        );
        // No rule for WhatsApp: anywhere.
        assert_eq!(rules.refuses(Channel::Whatsapp, &at("+442071838750")), None);
        // +1 is shared: libphonenumber tells Canada (Toronto) from the US.
        let star = super::tests::rules(&["*=US"]);
        assert_eq!(
            star.refuses(Channel::Sms, &at("+14165550123")),
            Some(Some(Id::CA))
        );
        assert_eq!(star.refuses(Channel::Sms, &at("+12015550123")), None);
    }

    #[test]
    fn refuses_malformed_rules() {
        for bad in ["sms", "fax=SG", "sms=XX", "sms=", "sms=SG,SG2"] {
            assert!(CountryRules::parse(&[bad.to_string()]).is_err(), "{bad}");
        }
        assert!(CountryRules::parse(&["sms=SG".into(), "sms=MY".into()]).is_err());
    }
}
