//! A destination as the limits and country rules see it: parsed once with
//! libphonenumber's data (the `phonenumber` crate), so `+65 9123 4567`,
//! `6591234567` and `91234567` with country `SG` are one number in every
//! count, and its country is known.

use std::str::FromStr;

use phonenumber::Mode;
use phonenumber::country::Id;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Number {
    /// E.164 (`+6591234567`); the input as given when it doesn't parse.
    pub e164: String,
    pub country: Option<Id>,
}

impl Number {
    /// Loads libphonenumber's data, which the crate does on first use: at
    /// startup, rather than in the first caller's StartVerification (160 ms
    /// in a release build, over a second in a debug one).
    pub fn load_data() {
        Number::parse("+6591234567", None);
    }

    /// `country` is the request's ISO 3166 hint for a national number. As
    /// in validation, digits without `+` and without a country are already
    /// international.
    pub fn parse(destination: &str, country: Option<&str>) -> Self {
        let region = country.and_then(|c| Id::from_str(&c.trim().to_ascii_uppercase()).ok());
        let international;
        let text = if region.is_none() && !destination.trim_start().starts_with('+') {
            international = format!("+{}", destination.trim());
            international.as_str()
        } else {
            destination
        };
        match phonenumber::parse(region, text) {
            Ok(number) => Number {
                e164: number.format().mode(Mode::E164).to_string(),
                country: number.country().id(),
            },
            Err(_) => Number {
                e164: destination.to_owned(),
                country: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_a_number_is_one_number() {
        let international = Number::parse("+6591234567", None);
        assert_eq!(international.e164, "+6591234567");
        assert_eq!(international.country, Some(Id::SG));
        assert_eq!(Number::parse("6591234567", None), international);
        assert_eq!(Number::parse("91234567", Some("SG")), international);
        assert_eq!(Number::parse("+65 9123 4567", None), international);
        // +1 is shared: libphonenumber tells Canada (Toronto) from the US.
        assert_eq!(Number::parse("+14165550123", None).country, Some(Id::CA));
        assert_eq!(Number::parse("+12015550123", None).country, Some(Id::US));
    }
}
