//! Destination normalisation, following 8x8's documented rules for `destination` + `country`.
//!
//! Formatting characters (spaces, brackets, dashes, dots) are dropped. A leading `+` marks an
//! international number. Otherwise, when `country` is given, the number is national: its
//! leading zeros are dropped and the country's dialling code is prepended, unless the digits
//! already start with that code and are long enough to hold a national number after it (8x8's
//! tutorial sends `6598765432` with country `SG` and gets `+6598765432`). Without `country`
//! the digits are taken as international without `+`. The result must be 8–15 digits that do
//! not start with 0 (E.164), else 8x8 answers code 1002.

/// Why a destination (or country) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhoneError {
    /// Not an E.164 number after normalisation (8x8 code 1002).
    InvalidMsisdn,
    /// `country` is not two letters (8x8 code 1010).
    CountryFormat,
    /// `country` is two letters but not a country the sandbox knows (8x8 code 1009).
    UnknownCountry,
}

/// ISO 3166 alpha-2 → international dialling code.
const DIALLING_CODES: &[(&str, &str)] = &[
    ("AE", "971"),
    ("AR", "54"),
    ("AT", "43"),
    ("AU", "61"),
    ("BD", "880"),
    ("BE", "32"),
    ("BN", "673"),
    ("BR", "55"),
    ("CA", "1"),
    ("CH", "41"),
    ("CL", "56"),
    ("CN", "86"),
    ("CO", "57"),
    ("DE", "49"),
    ("DK", "45"),
    ("EG", "20"),
    ("ES", "34"),
    ("FI", "358"),
    ("FR", "33"),
    ("GB", "44"),
    ("HK", "852"),
    ("ID", "62"),
    ("IE", "353"),
    ("IL", "972"),
    ("IN", "91"),
    ("IT", "39"),
    ("JP", "81"),
    ("KH", "855"),
    ("KR", "82"),
    ("LA", "856"),
    ("LK", "94"),
    ("MM", "95"),
    ("MO", "853"),
    ("MX", "52"),
    ("MY", "60"),
    ("NG", "234"),
    ("NL", "31"),
    ("NO", "47"),
    ("NZ", "64"),
    ("PE", "51"),
    ("PH", "63"),
    ("PK", "92"),
    ("PL", "48"),
    ("PT", "351"),
    ("SA", "966"),
    ("SE", "46"),
    ("SG", "65"),
    ("TH", "66"),
    ("TR", "90"),
    ("TW", "886"),
    ("US", "1"),
    ("VN", "84"),
    ("ZA", "27"),
];

/// Validates an ISO alpha-2 country (case-insensitive) and returns its dialling code.
pub fn dialling_code(country: &str) -> Result<&'static str, PhoneError> {
    if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(PhoneError::CountryFormat);
    }
    let upper = country.to_ascii_uppercase();
    DIALLING_CODES
        .iter()
        .find(|(iso, _)| *iso == upper)
        .map(|(_, code)| *code)
        .ok_or(PhoneError::UnknownCountry)
}

/// Normalises `destination` to international digits without `+` (e.g. `6598765432`).
pub fn normalise(destination: &str, country: Option<&str>) -> Result<String, PhoneError> {
    // Validate the country even when the number is international, as 8x8 validates every field.
    let prefix = country.map(dialling_code).transpose()?;
    let cleaned: String = destination
        .chars()
        .filter(|c| !c.is_whitespace() && !matches!(c, '(' | ')' | '[' | ']' | '-' | '.'))
        .collect();
    let digits = if let Some(rest) = cleaned.strip_prefix('+') {
        rest.to_owned()
    } else if let Some(prefix) = prefix {
        if !all_digits(&cleaned) {
            return Err(PhoneError::InvalidMsisdn);
        }
        let national = cleaned.trim_start_matches('0');
        // Already international: the code plus at least a short national number.
        if national.starts_with(prefix) && national.len() >= prefix.len() + 8 {
            national.to_owned()
        } else {
            format!("{prefix}{national}")
        }
    } else {
        cleaned
    };
    if all_digits(&digits) && (8..=15).contains(&digits.len()) && !digits.starts_with('0') {
        Ok(digits)
    } else {
        Err(PhoneError::InvalidMsisdn)
    }
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn international_with_plus_and_formatting() {
        assert_eq!(normalise("+1 (987) 654-3210", None).unwrap(), "19876543210");
        assert_eq!(
            normalise("+65(876)54321", Some("SG")).unwrap(),
            "6587654321"
        );
        assert_eq!(normalise("+65.9876.5432", None).unwrap(), "6598765432");
    }

    #[test]
    fn national_with_country() {
        assert_eq!(normalise("8765 4321", Some("SG")).unwrap(), "6587654321");
        assert_eq!(
            normalise("07700 900123", Some("gb")).unwrap(),
            "447700900123"
        );
        assert_eq!(
            normalise("0812-3456-789", Some("ID")).unwrap(),
            "628123456789"
        );
    }

    #[test]
    fn national_format_that_already_holds_the_country_code() {
        assert_eq!(normalise("6598765432", Some("SG")).unwrap(), "6598765432");
        assert_eq!(normalise("14155550123", Some("US")).unwrap(), "14155550123");
        // Too short to be code + number: a national number that starts like the code.
        assert_eq!(normalise("65123456", Some("SG")).unwrap(), "6565123456");
    }

    #[test]
    fn international_without_plus() {
        assert_eq!(normalise("6598765432", None).unwrap(), "6598765432");
    }

    #[test]
    fn rejects_non_e164() {
        for bad in [
            "",
            "+",
            "1234567",
            "+0123456789",
            "0123456789",
            "65987a5432",
            "+65+98765432",
            "1234567890123456",
            "++6598765432",
        ] {
            assert_eq!(
                normalise(bad, None),
                Err(PhoneError::InvalidMsisdn),
                "{bad:?}"
            );
        }
        assert_eq!(normalise("12", Some("SG")), Err(PhoneError::InvalidMsisdn));
    }

    #[test]
    fn country_errors() {
        assert_eq!(
            normalise("87654321", Some("XX")),
            Err(PhoneError::UnknownCountry)
        );
        assert_eq!(
            normalise("87654321", Some("SGP")),
            Err(PhoneError::CountryFormat)
        );
        assert_eq!(
            normalise("87654321", Some("S1")),
            Err(PhoneError::CountryFormat)
        );
        assert_eq!(
            normalise("+6587654321", Some("XX")),
            Err(PhoneError::UnknownCountry)
        );
    }

    #[test]
    fn table_has_required_countries() {
        for (iso, code) in [
            ("SG", "65"),
            ("US", "1"),
            ("CA", "1"),
            ("GB", "44"),
            ("ID", "62"),
            ("MY", "60"),
            ("PH", "63"),
            ("TH", "66"),
            ("VN", "84"),
            ("IN", "91"),
            ("AU", "61"),
            ("DE", "49"),
            ("FR", "33"),
            ("ES", "34"),
            ("IT", "39"),
            ("NL", "31"),
            ("JP", "81"),
            ("KR", "82"),
            ("CN", "86"),
            ("HK", "852"),
            ("BR", "55"),
            ("MX", "52"),
        ] {
            assert_eq!(dialling_code(iso), Ok(code));
        }
    }
}
