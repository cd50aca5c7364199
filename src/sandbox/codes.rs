//! One-time code generation (per 8x8's `codeType` rules) and message template rendering.
//!
//! Codes come from `rand::rng()`, a cryptographically secure generator reseeded from the OS,
//! so sandbox codes are as unguessable as real ones and tests cannot accidentally rely on them.

use rand::Rng;

use super::wire::CodeType;

/// Default `codeLength` when the request omits it.
pub const DEFAULT_LENGTH: usize = 4;

const DIGITS: &[u8] = b"0123456789";
const ALPHANUMERIC: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const CAPITALS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
/// Capitals without the easily confused I, O, Q, S and Z.
const EASY: &[u8] = b"ABCDEFGHJKLMNPRTUVWXY0123456789";

/// Generates a code of `length` characters (3–10, checked by the caller) with the OS-seeded CSPRNG.
pub fn generate(code_type: CodeType, length: usize) -> String {
    let rng = &mut rand::rng();
    match code_type {
        CodeType::Numeric => pick(rng, DIGITS, length),
        CodeType::NumericWithDash => {
            // codeLength counts the dash; a 3-character code has no room for one.
            if length <= 3 {
                return pick(rng, DIGITS, length);
            }
            let digits = length - 1;
            let head = digits / 2;
            format!(
                "{}-{}",
                pick(rng, DIGITS, head),
                pick(rng, DIGITS, digits - head)
            )
        }
        CodeType::Alphanumeric => pick(rng, ALPHANUMERIC, length),
        CodeType::AlphanumericCapitals => pick(rng, CAPITALS, length),
        CodeType::AlphanumericEasy => pick(rng, EASY, length),
    }
}

fn pick(rng: &mut impl Rng, alphabet: &[u8], count: usize) -> String {
    (0..count)
        .map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())]))
        .collect()
}

/// Renders the message text: `{code}` and `{brand}` placeholders are replaced; a missing brand
/// renders empty. Without a template, 8x8's default text is used.
pub fn render(template: Option<&str>, brand: Option<&str>, code: &str) -> String {
    let template = match (template, brand) {
        (Some(t), _) => t,
        (None, Some(_)) => "{brand}: Your verification code is {code}",
        (None, None) => "Your verification code is {code}",
    };
    // One pass over the template, so placeholder text inside the brand is never expanded.
    let mut out = String::with_capacity(template.len() + code.len());
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        if let Some(after) = tail.strip_prefix("{code}") {
            out.push_str(code);
            rest = after;
        } else if let Some(after) = tail.strip_prefix("{brand}") {
            out.push_str(brand.unwrap_or(""));
            rest = after;
        } else {
            out.push('{');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn many(code_type: CodeType, length: usize) -> Vec<String> {
        (0..200).map(|_| generate(code_type, length)).collect()
    }

    #[test]
    fn numeric_is_digits_of_length() {
        for length in 3..=10 {
            for code in many(CodeType::Numeric, length) {
                assert_eq!(code.len(), length);
                assert!(code.bytes().all(|b| b.is_ascii_digit()), "{code}");
            }
        }
    }

    #[test]
    fn numeric_with_dash_places_one_dash_left_of_centre() {
        for code in many(CodeType::NumericWithDash, 3) {
            assert_eq!(code.len(), 3);
            assert!(code.bytes().all(|b| b.is_ascii_digit()));
        }
        for (length, dash_at) in [(4, 1), (5, 2), (6, 2), (7, 3), (8, 3), (9, 4), (10, 4)] {
            for code in many(CodeType::NumericWithDash, length) {
                assert_eq!(code.len(), length, "{code}");
                assert_eq!(code.find('-'), Some(dash_at), "{code}");
                assert_eq!(code.matches('-').count(), 1, "{code}");
                assert!(code.bytes().all(|b| b == b'-' || b.is_ascii_digit()));
            }
        }
    }

    #[test]
    fn alphanumeric_alphabets() {
        for code in many(CodeType::Alphanumeric, 10) {
            assert_eq!(code.len(), 10);
            assert!(code.bytes().all(|b| b.is_ascii_alphanumeric()));
        }
        for code in many(CodeType::AlphanumericCapitals, 10) {
            assert_eq!(code.len(), 10);
            assert!(
                code.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            );
        }
        for code in many(CodeType::AlphanumericEasy, 10) {
            assert_eq!(code.len(), 10);
            assert!(
                code.bytes()
                    .all(|b| (b.is_ascii_uppercase() || b.is_ascii_digit())
                        && !b"IOQSZ".contains(&b))
            );
        }
    }

    #[test]
    fn alphanumeric_uses_both_cases_over_many_draws() {
        let all: String = many(CodeType::Alphanumeric, 10).concat();
        assert!(all.bytes().any(|b| b.is_ascii_lowercase()));
        assert!(all.bytes().any(|b| b.is_ascii_uppercase()));
        assert!(all.bytes().any(|b| b.is_ascii_digit()));
    }

    #[test]
    fn renders_defaults_and_templates() {
        assert_eq!(render(None, None, "1234"), "Your verification code is 1234");
        assert_eq!(
            render(None, Some("ACME"), "1234"),
            "ACME: Your verification code is 1234"
        );
        assert_eq!(
            render(Some("{brand} code {code}, again {code}"), None, "42-1"),
            " code 42-1, again 42-1"
        );
        assert_eq!(render(Some("{x} {code"), None, "1"), "{x} {code");
        assert_eq!(render(Some("{code}"), Some("{code}"), "9"), "9");
        assert_eq!(
            render(Some("{brand}{code}"), Some("{code}"), "9"),
            "{code}9"
        );
    }
}
