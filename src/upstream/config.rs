//! Where the upstream is and which key signs each request.

use std::collections::HashMap;
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

/// 8x8's regional deployments. An account lives in one region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Region {
    /// Asia-Pacific (8x8's default).
    #[default]
    Apac,
    /// North America.
    Us,
    /// Europe.
    Eu,
    /// Indonesia.
    Id,
}

impl Region {
    pub fn base_url(self) -> Url {
        let url = match self {
            Region::Apac => "https://verify.8x8.com",
            Region::Us => "https://verify.us.8x8.com",
            Region::Eu => "https://verify.8x8.uk",
            Region::Id => "https://verify.8x8.id",
        };
        Url::parse(url).expect("regional base URLs are valid")
    }
}

/// API keys: one default and optional per-subaccount overrides.
#[derive(Clone, Default)]
pub struct ApiKeys {
    pub default: Option<SecretString>,
    pub per_subaccount: HashMap<String, SecretString>,
}

impl ApiKeys {
    pub fn single(key: SecretString) -> Self {
        ApiKeys {
            default: Some(key),
            per_subaccount: HashMap::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.default.is_none() && self.per_subaccount.is_empty()
    }

    pub fn for_subaccount(&self, subaccount: &str) -> Option<&SecretString> {
        self.per_subaccount
            .get(subaccount)
            .or(self.default.as_ref())
    }

    /// Parses a key file: one `subaccount=key` per line, or a bare `key` line
    /// for the default; blank lines and `#` comments are ignored.
    pub fn parse_file(text: &str) -> Result<Self, String> {
        let mut keys = ApiKeys::default();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.split_once('=') {
                Some((subaccount, key))
                    if !subaccount.trim().is_empty() && !key.trim().is_empty() =>
                {
                    keys.per_subaccount
                        .insert(subaccount.trim().to_owned(), SecretString::from(key.trim()));
                }
                Some(_) => return Err(format!("line {}: expected subaccount=key", number + 1)),
                None if keys.default.is_none() => keys.default = Some(SecretString::from(line)),
                None => return Err(format!("line {}: a second default key", number + 1)),
            }
        }
        Ok(keys)
    }
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: keys never reach a log line.
        f.debug_struct("ApiKeys")
            .field("default", &self.default.is_some())
            .field(
                "subaccounts",
                &self.per_subaccount.keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub base_url: Url,
    pub keys: ApiKeys,
    /// Bound on one upstream call when the caller set no deadline.
    pub timeout: Duration,
}
